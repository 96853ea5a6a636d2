'use strict';

// npm counts a packed `prepare` script as an install script (it warns, and
// --strict-allow-scripts refuses the install), although the tarball carries
// the built addon and needs no build. `prepack` builds and strips `prepare`
// from package.json; `postpack` puts the original back.
//
//   node scripts/pack-manifest.js strip | restore

const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const manifest = path.join(root, 'package.json');
const saved = path.join(root, '.package.json.prepack');

const command = process.argv[2];
if (command === 'strip') {
  const text = fs.readFileSync(manifest, 'utf8');
  const pkg = JSON.parse(text);
  if (!fs.existsSync(saved)) fs.writeFileSync(saved, text);
  if (pkg.scripts) delete pkg.scripts.prepare;
  fs.writeFileSync(manifest, JSON.stringify(pkg, null, 2) + '\n');
} else if (command === 'restore') {
  if (fs.existsSync(saved)) fs.renameSync(saved, manifest);
} else {
  console.error('usage: node scripts/pack-manifest.js strip|restore');
  process.exit(2);
}

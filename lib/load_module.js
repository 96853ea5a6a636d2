'use strict';

/**
 * How an egg 4 worker loads the framework and the `require` entries: resolved from the app's
 * baseDir (an absolute path as is, a relative one against baseDir, a package name from the
 * node_modules above baseDir), with `import()` when the worker runs as ESM so that an ESM app and
 * its framework share one copy of egg, with `require()` otherwise. egg 3's workers `require()`.
 */

const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');

function readJSON(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

// the file an ESM `import` of a package directory loads: exports["."] for `import`, else module, else main
function importEntry(dir) {
  const pkgFile = path.join(dir, 'package.json');
  if (!fs.existsSync(pkgFile)) return require.resolve(dir);
  const pkg = readJSON(pkgFile);
  const pick = target => {
    if (typeof target === 'string') return target;
    if (!target || typeof target !== 'object' || Array.isArray(target)) return null;
    for (const condition of [ 'import', 'node', 'default' ]) {
      const found = pick(target[condition]);
      if (found) return found;
    }
    return null;
  };
  let exportsRoot = pkg.exports;
  if (exportsRoot && typeof exportsRoot === 'object' && !Array.isArray(exportsRoot) && '.' in exportsRoot) {
    exportsRoot = exportsRoot['.'];
  }
  const entry = pick(exportsRoot) || pkg.module || pkg.main || 'index.js';
  return path.join(dir, entry);
}

// the directory of package `name` in the node_modules above `baseDir`
function packageDir(name, baseDir) {
  let dir = baseDir;
  for (;;) {
    const candidate = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return path.dirname(require.resolve(`${name}/package.json`, { paths: [ baseDir ] }));
}

function isBareName(spec) {
  return !path.isAbsolute(spec) && !spec.startsWith('./') && !spec.startsWith('../');
}

/**
 * @param {string} spec - an absolute path, a path relative to baseDir, or a package name
 * @param {Object} opts - `baseDir`, and `useImport` for ESM loading
 * @return {Promise<Object>} the module (its namespace, or its CommonJS exports)
 */
async function loadModule(spec, { baseDir, useImport }) {
  if (!useImport) {
    const file = isBareName(spec) ? require.resolve(spec, { paths: [ baseDir ] }) : require.resolve(path.resolve(baseDir, spec));
    return require(file);
  }
  let file;
  if (isBareName(spec)) {
    const [ scopeOrName, maybeName, ...rest ] = spec.split('/');
    const name = scopeOrName.startsWith('@') ? `${scopeOrName}/${maybeName}` : scopeOrName;
    const subpath = scopeOrName.startsWith('@') ? rest : [ maybeName, ...rest ].filter(Boolean);
    const dir = packageDir(name, baseDir);
    file = subpath.length ? require.resolve(path.join(dir, ...subpath)) : importEntry(dir);
  } else {
    const target = path.resolve(baseDir, spec);
    file = fs.existsSync(target) && fs.statSync(target).isDirectory() ? importEntry(target) : target;
  }
  const namespace = await import(pathToFileURL(file).href);
  // a CommonJS module imported from ESM: its exports are the default export
  if (namespace.default && typeof namespace.default === 'object' && !namespace.Application && !namespace.Agent) {
    return Object.assign({}, namespace.default, namespace);
  }
  return namespace;
}

module.exports = { loadModule, importEntry };

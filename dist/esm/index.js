// The ESM entry (the `import` condition): only egg 4 and its ESM apps import a cluster manager,
// so its Master speaks egg 4 and forks the workers in dist/esm/, which load the app with import().
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const BaseMaster = require('../../lib/master.js');
const errors = require('../../lib/errors.js');

export const { ClusterAgentWorkerError, ClusterWorkerExceptionError } = errors;

export class Master extends BaseMaster {
  constructor(options) {
    super(options, { entry: 'esm' });
  }
}

/**
 * Starts an egg 4 cluster: resolves once every app worker listens, rejects when the start fails.
 * @param {Object} options - @eggjs/cluster's ClusterOptions
 */
export async function startCluster(options) {
  await new Master(options).ready();
}

'use strict';

// egg-cluster 2.x's timer helper; its test suite imports `sleep` from this path
exports.sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

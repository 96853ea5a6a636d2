'use strict';

// egg-cluster 2.x kept its option parser here; code and tests written for it still require this path
module.exports = require('../options');

'use strict';

// egg 4's app worker (CommonJS apps): lib/app_worker.js, in egg 4's dialect
require('../../lib/app_worker.js');

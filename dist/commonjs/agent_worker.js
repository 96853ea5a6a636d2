'use strict';

// egg 4's agent worker (CommonJS apps): lib/agent_worker.js, in egg 4's dialect
require('../../lib/agent_worker.js');

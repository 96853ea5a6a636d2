'use strict';

module.exports = app => require('./bench_worker')(app.messenger, 'app');

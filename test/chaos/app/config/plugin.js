'use strict';

// only what the suite needs: fewer plugins, faster (re)starts under a kill storm
for (const name of [ 'session', 'security', 'jsonp', 'i18n', 'watcher', 'schedule', 'multipart',
  'development', 'logrotator', 'static', 'view' ]) {
  exports[name] = { enable: false };
}

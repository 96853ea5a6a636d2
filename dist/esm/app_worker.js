// egg 4's app worker (ESM apps): lib/app_worker.js, in egg 4's dialect, loading with import()
import '../../lib/app_worker.js';

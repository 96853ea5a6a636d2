// egg 4's agent worker (ESM apps): lib/agent_worker.js, in egg 4's dialect, loading with import()
import '../../lib/agent_worker.js';

'use strict';

/**
 * The master's console logger. Its output is byte for byte egg-logger's EggConsoleLogger (the
 * logger egg-cluster's master uses), so log scrapers and tests that grep the master's lines
 * keep working, but it does not load egg-logger and its dependencies (~11 MiB) in the master:
 *
 *   `2026-11-26 17:34:30,123 INFO 4242 [master] ...` + os.EOL
 *
 * - a level name (DEBUG, INFO, WARN, ERROR, NONE; EGG_LOG overrides it), ERROR to stderr and
 *   everything else to stdout;
 * - `util.format` of the arguments, or egg-logger's error layout when the first one is an Error
 *   (formatting an Error loads egg-logger's formatter, on that rare path only);
 * - colours only when chalk (through egg-logger) would use them; chalk is loaded only then.
 */

const os = require('os');
const util = require('util');
const path = require('path');

const LEVELS = { ALL: -Infinity, DEBUG: 0, INFO: 1, WARN: 2, ERROR: 3, NONE: Infinity };

function toLevel(value) {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value) return LEVELS[value.toUpperCase()];
  return undefined;
}

function pad(n, width) {
  return String(n).padStart(width, '0');
}

/**
 * Local time as `YYYY-MM-DD HH:mm:ss<sep>SSS`, the date of egg's log lines.
 * @param {String} [msSep] - between seconds and milliseconds, `.` by default
 * @param {Date} [d] - now by default
 * @return {String} the date
 */
function logDate(msSep, d) {
  d = d || new Date();
  return `${d.getFullYear()}-${pad(d.getMonth() + 1, 2)}-${pad(d.getDate(), 2)} ` +
    `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}` +
    `${msSep || '.'}${pad(d.getMilliseconds(), 3)}`;
}

// egg-logger's error formatter, and the chalk egg-logger colours with
function eggLoggerDir() {
  return path.dirname(require.resolve('egg-logger/package.json'));
}
function eggLoggerChalk() {
  return require(require.resolve('chalk', { paths: [ eggLoggerDir() ] }));
}
function formatError(err) {
  return require(path.join(eggLoggerDir(), 'lib', 'utils.js')).formatError(err, { maxCauseChainLength: 10 });
}

// chalk (supports-color) never colours a stream that is not a TTY unless forced by FORCE_COLOR
// or a --color switch: in that case (pipes, files, daemons) chalk need not be loaded at all
function mayColour() {
  if ('FORCE_COLOR' in process.env) return true;
  if (process.argv.some(arg => /^--colou?rs?(=(true|always))?$/.test(arg))) return true;
  return !!process.stdout.isTTY;
}

let chalk; // undefined: not decided yet; null: no colours
function colours() {
  if (chalk === undefined) {
    chalk = null;
    if (mayColour()) {
      const loaded = eggLoggerChalk();
      if (loaded.supportsColor) chalk = loaded;
    }
  }
  return chalk;
}

function paint(line, level) {
  const c = colours();
  if (!c) return line;
  if (level === 'ERROR') return c.red(line);
  if (level === 'WARN') return c.yellow(line);
  return line
    .replace(/([0-9]+ms)/g, c.green('$1'))
    .replace(/(\[[\w\-_.:]+\])/g, c.blue('$1'))
    .replace(/(GET|POST|PUT|PATH|HEAD|DELETE) /g, c.cyan('$1 '));
}

class ConsoleLogger {
  /**
   * @param {Object} [options] - `{ level }`: a level name; without one, egg-logger's default
   *   (NODE_CONSOLE_LOGGRE_LEVEL [sic], else INFO in production and WARN otherwise)
   */
  constructor(options = {}) {
    const fallback = process.env.NODE_CONSOLE_LOGGRE_LEVEL || (process.env.NODE_ENV === 'production' ? 'INFO' : 'WARN');
    this._level = toLevel(options.level || fallback);
    if (process.env.EGG_LOG) this._level = toLevel(process.env.EGG_LOG);
  }

  shouldLog(level) {
    return this._level !== LEVELS.NONE && this._level <= LEVELS[level];
  }

  log(level, args) {
    if (!this.shouldLog(level)) return;
    const message = args[0] instanceof Error
      ? formatError(args[0])
      : util.format(...args);
    const line = paint(`${logDate(',')} ${level} ${process.pid} ${message}`, level) + os.EOL;
    if (LEVELS[level] >= LEVELS.ERROR) process.stderr.write(line);
    else process.stdout.write(line);
  }

  debug(...args) {
    this.log('DEBUG', args);
  }

  info(...args) {
    this.log('INFO', args);
  }

  warn(...args) {
    this.log('WARN', args);
  }

  error(...args) {
    this.log('ERROR', args);
  }
}

module.exports = { ConsoleLogger, logDate };

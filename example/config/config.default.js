'use strict';

exports.keys = 'egg-cluster-rs-example';

exports.cluster = {
  listen: {
    port: Number(process.env.PORT || 7001),
    hostname: '127.0.0.1',
  },
};

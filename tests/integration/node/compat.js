// node-zookeeper-client (npm) against a server: `node compat.js HOST:PORT PREFIX`.
// Prints one JSON line of what it saw; exits non-zero if the client library throws.
'use strict';
const zookeeper = require('node-zookeeper-client');

const [hosts, prefix] = process.argv.slice(2);
const out = {};
const client = zookeeper.createClient(hosts, { sessionTimeout: 10000, retries: 0 });

function step(fn) {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));
}

client.on('state', (s) => {
  if (s === zookeeper.State.AUTH_FAILED) out.auth_failed = true;
});

client.once('connected', async () => {
  try {
    await step((cb) => client.create(prefix, Buffer.from('p'), cb));
    for (let i = 0; i < 4; i++) {
      await step((cb) => client.create(`${prefix}/c${i}`, Buffer.from('x'), cb));
    }
    await step((cb) => client.remove(`${prefix}/c0`, -1, cb));
    await step((cb) => client.remove(`${prefix}/c1`, -1, cb));
    const stat = await step((cb) => client.exists(prefix, cb));
    out.cversion = stat.cversion;
    out.num_children = stat.numChildren;
    const seq = await step((cb) =>
      client.create(`${prefix}/s`, Buffer.from(''), zookeeper.CreateMode.PERSISTENT_SEQUENTIAL, cb));
    out.sequential = seq;
    // An unknown auth scheme: ZooKeeper answers AuthFailed in one frame and closes; a
    // second (notification) frame makes this library throw inside its socket handler.
    client.addAuthInfo('nosuch', Buffer.from('secret'));
    setTimeout(() => {
      out.survived = true;
      console.log(JSON.stringify(out));
      client.close();
      process.exit(0);
    }, 1500);
  } catch (e) {
    console.log(JSON.stringify({ error: String(e) }));
    process.exit(2);
  }
});
client.connect();
setTimeout(() => {
  console.log(JSON.stringify({ error: 'timed out', partial: out }));
  process.exit(3);
}, 20000);

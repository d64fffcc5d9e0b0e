// The uncontended cycle of node-redlock (npm `redlock` 5.0.0-beta.2 on ioredis 5): one key
// acquired and released by one client, again and again, the same cycle benches/peers.rs times
// for redmutex and for the floor. Installed and run by scripts/bench-peers.sh
// (NODE_PATH=target/peers/node/node_modules).
//
//   node node-redlock.js --serve PORT...   connects to 127.0.0.1:PORT..., warms up, prints
//                                          "ready", then for every line SECONDS read on stdin
//                                          runs cycles for that long and prints cycles/s;
//                                          exits at the end of stdin
//   node node-redlock.js SECONDS PORT...   one run; prints cycles/s (the QUORUM_PEER hook of
//                                          benches/quorum.rs)
//   --all-replies (before the others)      every node's reply awaited (see below)
//
// Settings: a plain acquire + release, no automatic extension. `acquire()`/`release()` are
// used rather than `using()`, which is the only path that arms node-redlock's automatic
// extension timer. `retryCount: 0`: the key is never taken, so the first attempt always wins
// and retries (default 10, 200 +- 100 ms apart) never run; 0 makes a lost attempt an error
// instead of a silent 2-second stall. `driftFactor` stays at its default (0.01, + 2 ms), as
// redmutex's does. TTL 10 s, as in the Rust side.
//
// node-redlock settles a round as soon as a quorum has voted (its `_attemptOperation`), and the
// other nodes' replies arrive later, on the same connections. With `--all-replies` first, each
// acquire and release also awaits its attempts' statistics, which resolve once every node has
// answered: the same client waiting for every reply, as the floor does.
"use strict";

const Redis = require("ioredis");
const { default: Redlock } = require("redlock");

const TTL_MS = 10000;
const KEY = "peers:node-redlock";

function fail(msg) {
  process.stderr.write(`node-redlock.js: ${msg}\n`);
  process.exit(1);
}

async function connect(ports) {
  const clients = ports.map(
    (port) =>
      new Redis({
        host: "127.0.0.1",
        port,
        // Fail fast instead of retrying forever when a node is not there.
        maxRetriesPerRequest: 1,
        retryStrategy: () => null,
      }),
  );
  await Promise.all(
    clients.map(
      (c) =>
        new Promise((resolve, reject) => {
          c.once("ready", resolve);
          c.once("error", (e) => reject(new Error(`cannot connect to a node: ${e.message}`)));
        }),
    ),
  );
  const redlock = new Redlock(clients, {
    driftFactor: 0.01,
    retryCount: 0,
    retryDelay: 200,
    retryJitter: 100,
    automaticExtensionThreshold: 500,
  });
  // node-redlock emits every "against" vote as an error event; cycle() reports a failed one.
  redlock.on("error", () => {});
  return { clients, redlock };
}

let last = null;
let allReplies = false;
async function cycle(redlock, clients) {
  let lock;
  try {
    lock = await redlock.acquire([KEY], TTL_MS);
    if (allReplies) await Promise.all(lock.attempts);
    const released = await lock.release();
    if (allReplies) await Promise.all(released.attempts);
  } catch (e) {
    // Never expected on this uncontended key: say what the nodes hold.
    const seen = await Promise.all(
      clients.map(async (c) => `${await c.get(KEY)} (pttl ${await c.pttl(KEY)})`),
    );
    fail(
      `${lock ? "release" : "acquire"} failed: ${e.message}; votes against: ${JSON.stringify(
        (e.attempts ? await Promise.all(e.attempts) : []).map((a) =>
          [...a.votesAgainst.values()].map((v) => v.message),
        ),
      )}; the nodes hold ${seen.join(", ")}; this cycle's value ${lock ? lock.value : "?"}, the last one ${last}`,
    );
  }
  last = lock.value;
}

// Cycles for `secs` seconds; cycles per second.
async function run({ redlock, clients }, secs) {
  const limit = BigInt(Math.round(secs * 1e9));
  const start = process.hrtime.bigint();
  let k = 0;
  let elapsed = 0n;
  while (elapsed < limit) {
    await cycle(redlock, clients);
    k += 1;
    elapsed = process.hrtime.bigint() - start;
  }
  return k / (Number(elapsed) / 1e9);
}

function ports(args) {
  if (args.length === 0) fail("usage: node-redlock.js --serve PORT... | SECONDS PORT...");
  return args.map((a) => {
    const p = Number(a);
    if (!Number.isInteger(p) || p <= 0 || p > 65535) fail(`not a port: ${a}`);
    return p;
  });
}

async function main() {
  let args = process.argv.slice(2);
  allReplies = args.includes("--all-replies");
  args = args.filter((a) => a !== "--all-replies");
  if (args[0] === "--serve") {
    const peer = await connect(ports(args.slice(1)));
    await run(peer, 1);
    process.stdout.write("ready\n");
    let queue = Promise.resolve();
    let buffered = "";
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", (chunk) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        const secs = Number(line);
        if (!(secs > 0)) fail(`not a number of seconds: ${line}`);
        queue = queue.then(async () => {
          const rate = await run(peer, secs);
          process.stdout.write(`${rate.toFixed(1)}\n`);
        });
      }
    });
    process.stdin.on("end", () => queue.then(() => process.exit(0)));
  } else {
    const secs = Number(args[0]);
    if (!(secs > 0)) fail(`not a number of seconds: ${args[0]}`);
    const peer = await connect(ports(args.slice(1)));
    await run(peer, Math.min(secs / 2, 0.3));
    process.stdout.write(`${(await run(peer, secs)).toFixed(1)}\n`);
    process.exit(0);
  }
}

main().catch((e) => fail(e.message));

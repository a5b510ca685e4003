/**
 * `npx tsx bench/poll-phase.ts [--sockets 5000] [--rate 55000] [--work-us 12] [--seconds 10]`: how long a turn of
 * Node's event loop lasts when thousands of sockets each send small frames, as in a heart storm.
 *
 * A client process opens `--sockets` TCP connections to this one and writes one byte on one of them at a time,
 * `--rate` writes a second in all; each read costs `--work-us` of CPU here (a busy loop standing in for the frame's
 * parse and handling). Every second it prints how many turns of the loop (`setImmediate` callbacks) ran, the most
 * read callbacks in one turn, and the longest turn. libuv polls again at once while a poll returns a full batch
 * of 1,024 events, up to 48 times: once the reads take most of the CPU, each turn runs 48 × 1,024 = 49,152 of
 * them, and whatever waits for `setImmediate` or a timer (a group commit, a room's tick) waits that long
 * (docs/BENCHMARKS.md, item 30; src/realtime/loop-guard.ts).
 */
import { fork } from 'node:child_process';
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    sockets: { type: 'string', default: '5000' },
    rate: { type: 'string', default: '55000' },
    'work-us': { type: 'string', default: '12' },
    seconds: { type: 'string', default: '10' },
    client: { type: 'string' },
  },
});
const sockets = Number(values.sockets);
const rate = Number(values.rate);
const seconds = Number(values.seconds);

if (values.client) {
  const port = Number(values.client);
  const conns: net.Socket[] = [];
  for (let i = 0; i < sockets; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    s.on('error', () => {});
    conns.push(s);
    if (i % 200 === 199) await new Promise((r) => setTimeout(r, 20));
  }
  let budget = 0;
  let last = performance.now();
  let next = 0;
  setInterval(() => {
    const now = performance.now();
    budget += (rate * (now - last)) / 1000;
    last = now;
    for (; budget >= 1; budget--) conns[next++ % sockets]!.write('x');
  }, 5);
  setTimeout(() => process.exit(0), (seconds + 3) * 1000);
} else {
  const workMs = Number(values['work-us']) / 1000;
  let reads = 0;
  let turns = 0;
  let mostReads = 0;
  let longest = 0;
  let lastTurn = performance.now();
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', () => {
      reads++;
      const until = performance.now() + workMs;
      while (performance.now() < until);
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const port = (server.address() as net.AddressInfo).port;
    const child = fork(new URL(import.meta.url).pathname, [
      '--client',
      String(port),
      '--sockets',
      String(sockets),
      '--rate',
      String(rate),
      '--seconds',
      String(seconds),
    ]);
    const turn = () => {
      const now = performance.now();
      longest = Math.max(longest, now - lastTurn);
      lastTurn = now;
      mostReads = Math.max(mostReads, reads);
      reads = 0;
      turns++;
      setImmediate(turn);
    };
    setImmediate(turn);
    console.log(`${sockets} sockets, ${rate} one-byte writes/s, ${values['work-us']} µs of work per read`);
    const report = setInterval(() => {
      console.log(
        `turns ${turns}/s, at most ${mostReads} reads in one turn, longest turn ${longest.toFixed(1)} ms`,
      );
      turns = mostReads = longest = 0;
    }, 1000);
    child.on('exit', () => {
      clearInterval(report);
      server.close();
      process.exit(0);
    });
  });
}

import WebSocket from 'ws';
const [url, sid] = process.argv.slice(2);
process.once('message', async (tokens: string[]) => {
  for (let i = 0; i < tokens.length; i += 100)
    await Promise.all(tokens.slice(i, i + 100).map((tok) => new Promise<void>((r) => { const ws = new WebSocket(`${url}/live-chat/ws/${sid}?token=${tok}&batch=1`); ws.once('message', () => r()); })));
  process.send!('ok');
});

/**
 * Takes docs/screenshot.png: the demo page with a short, realistic conversation (a HOST, a WINNER, likes).
 * Run after `npm run build:web`:  npx tsx web/scripts/screenshot.ts [output.png] [width] [height]
 */
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startServer } from '../../test/support/server.js';

const out = process.argv[2] ?? 'docs/screenshot.png';
const width = Number(process.argv[3] ?? 1280);
const height = Number(process.argv[4] ?? 800);
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
if (!existsSync(chromiumPath)) throw new Error(`no Chromium at ${chromiumPath} (apt-get install chromium)`);

const t = await startServer();
const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-sync',
  ],
});
try {
  const maya = await t.token('Maya Fischer', { roles: ['host'] });
  const jonas = await t.token('Jonas');
  const priya = await t.token('Priya S', { picture: 'https://avatars.invalid/priya.png' });
  const leo = await t.token('leo_92');
  const sessionId = await t.sessionId(maya);
  // Other viewers with the page open.
  for (const token of [maya, jonas, leo]) await t.connect(sessionId, token);

  const say = async (token: string, message: string) => {
    const res = await t.request('POST', '/live-chat/messages', { token, body: { message } });
    if (res.status !== 201) throw new Error(`send failed: ${JSON.stringify(res.body)}`);
    return res.body.id as number;
  };
  const like = (token: string, id: number) => t.request('POST', `/live-chat/like-message/${id}`, { token });

  const welcome = await say(maya, 'Welcome everyone! The draw starts soon, tickets close 5 minutes before.');
  await say(leo, 'first time watching live, good luck all!');
  const ticket = await say(jonas, 'Ticket 7-19-23 is feeling lucky tonight');
  await say(priya, 'Good luck everyone!! Who else is watching from Lisbon?');
  await say(leo, 'same numbers every week for 3 years, one day :)');
  for (const token of [jonas, priya, leo]) await like(token, welcome);
  for (const token of [maya, priya]) await like(token, ticket);
  for (let i = 0; i < 27; i++)
    await t.request('POST', '/live-chat/like', { token: [leo, jonas, priya][i % 3]! });
  const winners = await t.request('POST', `/live-chat/sessions/${sessionId}/winners`, {
    token: maya,
    body: { user_ids: [t.userId(jonas)] },
  });
  if (winners.status !== 200) throw new Error(`winners failed: ${JSON.stringify(winners.body)}`);
  await say(maya, 'And our winner is Jonas! Congratulations');
  await say(jonas, 'NO WAY. Thank you!!!');

  const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1 });
  // Signed in as Priya, as if she had joined through the form (see web/src/demo/auth.ts).
  const identity = JSON.stringify({ username: 'Priya S', host: false, token: priya });
  await context.addInitScript({
    content: `sessionStorage.setItem('draw-chat:dev-identity', ${JSON.stringify(identity)});`,
  });
  const page = await context.newPage();
  await page.goto(t.url);
  await page.getByText('NO WAY. Thank you!!!').waitFor();
  await page.getByRole('button', { name: 'Like message' }).nth(5).click();
  await page.getByRole('textbox', { name: 'Message' }).fill('Congrats Jonas!!');
  await page.keyboard.press('Enter');
  await page.getByText('Congrats Jonas!!').waitFor();
  await page.getByRole('button', { name: 'Like the draw' }).click();
  await page.waitForTimeout(300);
  await page.getByRole('textbox', { name: 'Message' }).focus();
  await page.screenshot({ path: out });
  console.log(`saved ${out}`);
} finally {
  await browser.close();
  await t.close();
}

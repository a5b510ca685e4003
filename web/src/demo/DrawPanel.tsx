import { useEffect, useRef } from 'react';
import type { ChatClient } from '../../../src/client/index.js';
import { formatCountdown } from '../widget/format.js';
import { useChatSnapshot, useNow } from '../widget/hooks.js';

const dayName = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
const timeName = new Intl.DateTimeFormat(undefined, {
  hour: 'numeric',
  minute: '2-digit',
  timeZoneName: 'short',
});
const shortTime = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;

/** Stands in for the draw platform's own page: the draw's name, its time in the viewer's zone, a countdown. */
export function DrawPanel({ client }: { client: ChatClient }) {
  const snap = useChatSnapshot(client);
  const now = useNow(1000, true, snap.clockOffsetMs);
  const drawIso =
    snap.session?.draw_time ?? snap.status?.session?.draw_time ?? snap.status?.next_draw_time ?? null;
  const draw = drawIso ? Date.parse(drawIso) : null;
  const opens = snap.session?.starts_at ?? snap.status?.opens_at ?? null;
  const closes = snap.session?.ends_at ?? snap.status?.closes_at ?? null;
  const left = draw === null ? null : draw - now;
  const live = left !== null && left <= 0 && closes !== null && Date.parse(closes) > now;

  // When the countdown runs out, ask the server what comes next.
  const asked = useRef<string | null>(null);
  useEffect(() => {
    if (left !== null && left <= 0 && !live && asked.current !== drawIso) {
      asked.current = drawIso;
      void client.refreshStatus();
    }
  }, [left, live, drawIso, client]);

  return (
    <section className="dc-draw" aria-labelledby="draw-title">
      <div className={`dc-stage${live ? ' dc-stage--live' : ''}`}>
        <div className="dc-stage__top">
          <span className={`dc-onair${live ? ' dc-onair--live' : ''}`}>{live ? 'LIVE' : 'UPCOMING'}</span>
          <span className="dc-stage__kicker">Weekly prize draw</span>
        </div>
        <div className="dc-stage__prize" aria-hidden="true">
          <span className="dc-ball dc-ball--1">7</span>
          <span className="dc-ball dc-ball--2">19</span>
          <span className="dc-ball dc-ball--3">23</span>
          <span className="dc-ball dc-ball--4">31</span>
          <span className="dc-ball dc-ball--5">42</span>
        </div>
        <div className="dc-stage__count">
          {left === null ? (
            <p className="dc-stage__label">Loading the draw…</p>
          ) : live ? (
            <>
              <p className="dc-stage__label">The draw is on</p>
              <p className="dc-stage__big">Good luck!</p>
            </>
          ) : left > 0 ? (
            <>
              <p className="dc-stage__label">The draw starts in</p>
              <p className="dc-stage__big" role="timer" aria-label="Time until the draw">
                {formatCountdown(left)}
              </p>
            </>
          ) : (
            <p className="dc-stage__label">This draw is over</p>
          )}
        </div>
      </div>
      <div className="dc-draw__info">
        <h1 id="draw-title">Prize draw · {draw !== null ? dayName.format(draw) : '…'}</h1>
        <dl className="dc-facts">
          <div>
            <dt>Draw time</dt>
            <dd>
              {draw !== null ? <time dateTime={drawIso ?? undefined}>{timeName.format(draw)}</time> : '—'}
            </dd>
          </div>
          <div>
            <dt>Chat window</dt>
            <dd>
              {opens && closes
                ? `${shortTime.format(Date.parse(opens))} – ${shortTime.format(Date.parse(closes))}`
                : '—'}
            </dd>
          </div>
          <div>
            <dt>Your time zone</dt>
            <dd>{zone.replaceAll('_', ' ')}</dd>
          </div>
        </dl>
        <p className="dc-draw__note">
          The chat opens before the draw and stays open for a while after it. Whoever wins gets a badge in the
          chat the moment they are named.
        </p>
      </div>
    </section>
  );
}

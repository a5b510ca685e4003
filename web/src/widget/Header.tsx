import type { ConnectionState } from '../../../src/client/index.js';
import { EyeIcon, HeartIcon } from './icons.js';

const STATE_LABEL: Record<ConnectionState, string> = {
  idle: 'Offline',
  connecting: 'Connecting',
  open: 'Live',
  reconnecting: 'Reconnecting',
  closed: 'Closed',
  stopped: 'Offline',
};

/**
 * Title, connection state, and the live counts. The counts' text is the plain number, 12345 and never "12K" (SPEC
 * §1); their label says what they count.
 */
export function Header({
  state,
  viewers,
  likes,
  title,
}: {
  state: ConnectionState;
  viewers: number;
  likes: number;
  title: string;
}) {
  return (
    <header className="dc-header">
      <div className="dc-header__title">
        <h2>{title}</h2>
        <span className={`dc-state dc-state--${state}`}>{STATE_LABEL[state]}</span>
      </div>
      <div className="dc-header__stats">
        <span className="dc-stat" title={`${viewers} watching`}>
          <EyeIcon />
          {/* biome-ignore lint/a11y/useSemanticElements: a labelled number (SPEC §1: text is the plain count), not a form group */}
          <span role="group" aria-label="Viewers" className="dc-stat__n">
            {viewers}
          </span>
        </span>
        <span className="dc-stat dc-stat--likes" title={`${likes} hearts for this draw`}>
          <HeartIcon />
          {/* biome-ignore lint/a11y/useSemanticElements: see Viewers */}
          <span role="group" aria-label="Likes" className="dc-stat__n" key={likes}>
            {likes}
          </span>
        </span>
      </div>
    </header>
  );
}

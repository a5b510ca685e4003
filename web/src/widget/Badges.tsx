import { MicIcon, TrophyIcon } from './icons.js';

/** WINNER and HOST badges: visible text, so they are read out and found as text. */
export function Badges({ winner, host }: { winner: boolean; host: boolean }) {
  if (!winner && !host) return null;
  return (
    <>
      {host && (
        <span className="dc-badge dc-badge--host">
          <MicIcon />
          HOST
        </span>
      )}
      {winner && (
        <span className="dc-badge dc-badge--winner">
          <TrophyIcon />
          WINNER
        </span>
      )}
    </>
  );
}

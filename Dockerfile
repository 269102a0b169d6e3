# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the dev dependencies.
# Node 24: the maintained LTS line (Node 20 reached end of life on 2026-04-30). CI also runs the tests on
# Node 20.18+, the lowest version package.json's engines allows.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
RUN npm ci --no-audit --no-fund --ignore-scripts && npx tsc -p tsconfig.json

# Runtime stage: production dependencies only, non-root.
FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    TOLLGATE_LISTEN=0.0.0.0:8080 \
    TOLLGATE_ADMIN=0.0.0.0:9901
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
COPY schema ./schema
COPY routes.yaml /etc/tollgate/routes.yaml
USER node
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9901/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["--config", "/etc/tollgate/routes.yaml"]

# syntax=docker/dockerfile:1
# Walden: multi-stage build. Tools → dependency cache (cargo-chef) → build (cargo-leptos) → slim runtime.
# Everything comes from crates.io, npm and Debian: no binaries are downloaded from elsewhere.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS tools
WORKDIR /tools
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add wasm32-unknown-unknown \
 && cargo install cargo-chef@0.1.78 --locked \
 && cargo install cargo-leptos@0.3.10 --locked --features no_downloads \
 && cargo install wasm-bindgen-cli --version 0.2.130
# wasm-opt from npm's binaryen 132 (Debian's binaryen 108 breaks hydration).
RUN npm install --prefix /tools --no-audit --no-fund binaryen@132.0.0
ENV PATH="/tools/node_modules/.bin:${PATH}"

FROM tools AS planner
WORKDIR /src
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM tools AS builder
WORKDIR /src
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer stays cached until Cargo.toml or Cargo.lock change.
RUN cargo chef cook --release --recipe-path recipe.json --package walden \
 && cargo chef cook --profile wasm-release --target wasm32-unknown-unknown --recipe-path recipe.json \
      --package walden-app --no-default-features --features hydrate
COPY . .
RUN cargo leptos build --release --split \
 && target/release/walden assets compress target/site/pkg \
 && cp target/release/walden /walden \
 && cp -r target/site /site

FROM debian:bookworm-slim AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 walden \
 && useradd --system --uid 10001 --gid walden --home-dir /app --shell /usr/sbin/nologin walden \
 && mkdir -p /data \
 && chown walden:walden /data
WORKDIR /app
COPY --from=builder /walden /app/walden
COPY --from=builder /site /app/site
ENV WALDEN_BIND=0.0.0.0:8080 \
    WALDEN_DATA_DIR=/data \
    WALDEN_SITE_ROOT=/app/site \
    WALDEN_LOG_FORMAT=json \
    LEPTOS_ENV=PROD \
    RUST_LOG=info
USER 10001:10001
EXPOSE 8080
VOLUME ["/data"]
ENTRYPOINT ["/usr/bin/tini", "--", "/app/walden"]
CMD ["serve"]

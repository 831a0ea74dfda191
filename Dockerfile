# Builds all Voxbridge binaries (CTranslate2 and whisper.cpp are compiled from source).
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang libclang-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --workspace --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libstdc++6 libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/voxbridge-edge /src/target/release/voxbridge-stt \
     /src/target/release/voxbridge-mt /src/target/release/voxctl /usr/local/bin/
ENV VOXBRIDGE_MODELS=/models

# Builds all Voxbridge binaries (CTranslate2 with oneDNN + Intel MKL, and whisper.cpp, are
# compiled from source).
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang libclang-dev \
    pkg-config libopus-dev python3 python3-venv && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Intel MKL + OpenMP from PyPI into .tools/mkl, where .cargo/config.toml points the build.
ARG MKL_VERSION=2026.1.0
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install -q --prefix /src/.tools/mkl \
    "mkl-static==${MKL_VERSION}" "mkl-include==${MKL_VERSION}"
COPY . .
RUN cargo build --release --workspace --bins

FROM debian:bookworm-slim
# libopus0: libopus, which decodes Opus audio files (Ogg Opus, WebM/Opus).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libstdc++6 libgomp1 \
    libopus0 && rm -rf /var/lib/apt/lists/*
# Intel's OpenMP runtime, which CTranslate2 is linked with, on the loader's path.
COPY --from=build /src/.tools/mkl/lib/libiomp5.so /usr/local/lib/
RUN ldconfig
COPY --from=build /src/target/release/voxbridge-edge /src/target/release/voxbridge-stt \
     /src/target/release/voxbridge-mt /src/target/release/voxctl /usr/local/bin/
ENV VOXBRIDGE_MODELS=/models

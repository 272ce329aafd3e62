# Zoneward: one static binary (the Swift runtime linked in) on a slim Debian.
#   docker build -t zoneward .
#   docker run --rm zoneward --version
# The runtime stage installs exactly the libraries the binary loads (see `ldd`): SQLite (GRDB uses the
# system library), zlib and zstd (backups), libcurl (URLSession for S3 and webhooks), CA certificates and
# time zones. integration/runtime-image.sh proves that list without a container engine: it builds the same
# root file system with debootstrap and runs the binary in it.

FROM swift:6.3-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libsqlite3-dev zlib1g-dev libzstd-dev libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY bench/PlannerBench ./bench/PlannerBench
COPY Tests ./Tests
RUN swift build -c release --static-swift-stdlib --product zoneward \
    && install -D .build/release/zoneward /out/zoneward \
    && /out/zoneward --generate-completion-script bash > /out/zoneward.bash \
    && /out/zoneward --generate-completion-script zsh > /out/_zoneward \
    && /out/zoneward --generate-completion-script fish > /out/zoneward.fish

FROM debian:bookworm-slim AS runtime
# integration/runtime-image.sh reads this line and installs the same list.
ARG RUNTIME_PACKAGES="libsqlite3-0 zlib1g libzstd1 libcurl4 ca-certificates tzdata"
RUN apt-get update && apt-get install -y --no-install-recommends $RUNTIME_PACKAGES \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 65532 --home /var/lib/zoneward --create-home zoneward
COPY --from=build /out/zoneward /usr/local/bin/zoneward
COPY --from=build /out/zoneward.bash /usr/share/bash-completion/completions/zoneward
COPY --from=build /out/_zoneward /usr/share/zsh/vendor-completions/_zoneward
COPY --from=build /out/zoneward.fish /usr/share/fish/vendor_completions.d/zoneward.fish
USER zoneward
WORKDIR /var/lib/zoneward
ENTRYPOINT ["/usr/local/bin/zoneward"]
CMD ["--help"]

# A Debian host with systemd as PID 1: the target that Molecule and `make demo`
# provision. It holds only what any real host has (systemd, Python, sudo,
# iproute2); everything the roles install, they install themselves.
ARG DEBIAN_RELEASE=bookworm
FROM debian:${DEBIAN_RELEASE}
ENV container=docker
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      systemd systemd-sysv dbus python3 python3-apt sudo iproute2 ca-certificates curl \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 # An empty package list that looks ancient, so that roles refresh it.
 && touch -d @0 /var/lib/apt/lists \
 # Units that make no sense in a container and only slow the boot.
 && systemctl mask systemd-logind.service getty.target console-getty.service \
      systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service \
      sys-kernel-debug.mount sys-kernel-tracing.mount
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]

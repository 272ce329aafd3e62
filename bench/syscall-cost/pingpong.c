// One process, one loopback TCP connection, 64-byte messages bounced between its two ends: the CPU time of
// four calls (a write and a read each way) with read(2)/write(2), as SwiftNIO makes them, or with
// recv(2)/send(2), as HAProxy makes them. The process's whole CPU time (CLOCK_PROCESS_CPUTIME_ID), not the
// system part alone: the user/system split is sampled at ticks and scaled, and both modes do the same work
// in user space, so the difference is the kernel's either way. See bench/syscall-cost.sh.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double cpu_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    return now.tv_sec + now.tv_nsec / 1e9;
}

static int fail(const char *what) {
    perror(what);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "rw") != 0 && strcmp(argv[1], "sr") != 0)) {
        fprintf(stderr, "usage: %s rw|sr ROUNDTRIPS\n", argv[0]);
        return 2;
    }
    int use_send = strcmp(argv[1], "sr") == 0;
    long rounds = atol(argv[2]);
    if (rounds <= 0) {
        fprintf(stderr, "ROUNDTRIPS must be a positive number\n");
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 1) != 0
        || getsockname(listener, (struct sockaddr *)&address, &length) != 0)
        return fail("listen");
    int client = socket(AF_INET, SOCK_STREAM, 0);
    if (client < 0 || connect(client, (struct sockaddr *)&address, sizeof address) != 0) return fail("connect");
    int server = accept(listener, NULL, NULL);
    if (server < 0) return fail("accept");
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buffer[4096];
    memset(buffer, 'x', sizeof buffer);
    int ends[2] = {client, server};
    double before = cpu_seconds();
    for (long round = 0; round < rounds; round++) {
        for (int side = 0; side < 2; side++) {
            int from = ends[side], to = ends[1 - side];
            ssize_t sent = use_send ? send(from, buffer, 64, 0) : write(from, buffer, 64);
            if (sent < 0) return fail("write");
            ssize_t got = use_send ? recv(to, buffer, sizeof buffer, 0) : read(to, buffer, sizeof buffer);
            if (got < 0) return fail("read");
            // One 64-byte message in flight on loopback arrives whole; anything else would skew the count.
            if (sent != 64 || got != 64) {
                fprintf(stderr, "short transfer: sent %zd, received %zd of 64 bytes\n", sent, got);
                return 1;
            }
        }
    }
    printf("%.3f\n", (cpu_seconds() - before) / rounds * 1e6);
    close(client);
    close(server);
    close(listener);
    return 0;
}

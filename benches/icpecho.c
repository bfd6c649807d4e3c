/* icpecho: the least an ICP responder can do, as the floor for
 * benches/icp.sh: one recvfrom and one sendto per query, the reply a MISS
 * echoing reqnum and URL; no access check, no store lookup, no log. It
 * never sleeps (non-blocking receive in a loop), so no wake-up latency is
 * added either: the best any responder on one core can do.
 *   icpecho ADDR PORT
 * Loopback only; runs until killed. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: icpecho ADDR PORT\n"); return 2; }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1 || bind(s, (void *)&a, sizeof a)) { perror("icpecho"); return 1; }
    uint8_t q[16384], r[16384];
    for (;;) {
        struct sockaddr_in from; socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, q, sizeof q, MSG_DONTWAIT, (void *)&from, &fl);
        if (n < 25 || q[0] != 1) continue;           /* a query: header, requester, URL */
        size_t len = (size_t)n - 4;                  /* the reply has no requester field */
        memcpy(r, q, 20); memcpy(r + 20, q + 24, len - 20);
        r[0] = 3; r[2] = len >> 8; r[3] = len & 255; /* ICP_OP_MISS */
        memset(r + 8, 0, 12);
        sendto(s, r, len, 0, (void *)&from, fl);
    }
}

/* icpecho_mmsg: benches/icpecho.c with batched system calls, the second
 * floor of benches/icp.sh: one recvmmsg takes whatever queries are queued
 * (up to 32, never waiting for more), one sendmmsg sends their replies, a
 * MISS echoing reqnum and URL each; no access check, no store lookup, no
 * log. It never sleeps (non-blocking receive in a loop). What a responder
 * that batches, as cuttle's does, could reach on one core at most.
 *   icpecho_mmsg ADDR PORT
 * Loopback only; runs until killed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 32
#define SLOT 16385

static uint8_t q[BATCH][SLOT], r[BATCH][SLOT];

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: icpecho_mmsg ADDR PORT\n"); return 2; }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1 || bind(s, (void *)&a, sizeof a)) { perror("icpecho_mmsg"); return 1; }
    struct sockaddr_in from[BATCH];
    struct iovec qv[BATCH], rv[BATCH];
    struct mmsghdr in[BATCH], out[BATCH];
    for (int i = 0; i < BATCH; i++) {
        qv[i] = (struct iovec){q[i], SLOT};
        rv[i] = (struct iovec){r[i], 0};
    }
    for (;;) {
        for (int i = 0; i < BATCH; i++)
            in[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &qv[i], .msg_iovlen = 1};
        int n = recvmmsg(s, in, BATCH, MSG_DONTWAIT, NULL), k = 0;
        for (int i = 0; i < n; i++) {
            size_t len = in[i].msg_len;
            if (len < 25 || len >= SLOT || q[i][0] != 1) continue; /* a query: header, requester, URL */
            len -= 4;                                            /* the reply has no requester field */
            memcpy(r[k], q[i], 20); memcpy(r[k] + 20, q[i] + 24, len - 20);
            r[k][0] = 3; r[k][2] = len >> 8; r[k][3] = len & 255; /* ICP_OP_MISS */
            memset(r[k] + 8, 0, 12);
            rv[k].iov_len = len;
            out[k].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = in[i].msg_hdr.msg_namelen, .msg_iov = &rv[k], .msg_iovlen = 1};
            k++;
        }
        for (int sent = 0; sent < k;) { /* the rest after a short send; a refused one is dropped */
            int m = sendmmsg(s, out + sent, k - sent, 0);
            sent += m > 0 ? m : 1;
        }
    }
}

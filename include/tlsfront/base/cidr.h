/*
 * cidr.h: address prefixes ("192.0.2.0/24", "2001:db8::/32", or a bare address meaning the
 * whole address) for the small allow lists of the legacy options: the load balancers allowed to send a
 * PROXY header, and the clients whose X-Forwarded-For is trusted. Pure functions, no
 * allocation, no I/O. IPv4-mapped IPv6 addresses ("::ffff:192.0.2.1", what a dual-stack
 * socket reports for an IPv4 peer) match IPv4 prefixes.
 */
#ifndef TF_CIDR_H
#define TF_CIDR_H

#include <stdbool.h>
#include <sys/socket.h>

struct tf_cidr {
    int family;              /* AF_INET or AF_INET6 */
    unsigned char addr[16];  /* network byte order; 4 bytes used for AF_INET */
    int prefix;              /* 0..32 or 0..128 */
};

/* Parse "ADDR" or "ADDR/PREFIX" (no brackets, no blanks). Bits beyond the prefix must be
 * zero ("10.0.0.1/8" is refused: it is most likely a typo). Returns 0 or TF_EINVAL. */
int tf_cidr_parse(const char *s, struct tf_cidr *out);

/* Whether sa (AF_INET or AF_INET6) lies in one of list[0..n). */
bool tf_cidr_match(const struct tf_cidr *list, int n, const struct sockaddr *sa);

#endif

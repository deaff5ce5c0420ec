/*
 * The sans-IO half of the C ABI from C: this program owns both UDP sockets and the clock and
 * drives a PfSession (QUIC control) and a PfReceiver (data plane) with poll(2), as an
 * embedding application with its own event loop would. Run by client/tests/c_harness.rs
 * against a real punktfunk/1 listener, plain and under AddressSanitizer.
 *
 *   sansio HOST_IPV4 PORT STATE_DIR PIN
 *
 * Pairs (PIN in the config), streams 640x360@60, asks for 320x192@30 after 1.5 s, sends a
 * key after 2.5 s, sends loss reports every 100 ms, says Goodbye after 4 s and drains. Exit 0
 * only if every check held.
 */
#define _POSIX_C_SOURCE 200809L
#include "punktfunk_core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "sansio: check failed at line %d: %s: ", __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fprintf(stderr, "\n");                                                        \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const char *last_error(void) {
    static char buf[512];
    punktfunk_last_error_message(buf, sizeof buf);
    return buf;
}

static int udp_socket(uint16_t *port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0) return -1;
    int big = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static PfSockAddr to_pf(const struct sockaddr_in *a) {
    PfSockAddr p;
    memset(&p, 0, sizeof p);
    p.family = 4;
    p.port = ntohs(a->sin_port);
    memcpy(p.addr, &a->sin_addr, 4);
    return p;
}

static struct sockaddr_in from_pf(const PfSockAddr *p) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(p->port);
    memcpy(&a.sin_addr, p->addr, 4);
    return a;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST_IPV4 PORT STATE_DIR PIN\n", argv[0]);
        return 2;
    }
    struct sockaddr_in host;
    memset(&host, 0, sizeof host);
    host.sin_family = AF_INET;
    host.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &host.sin_addr) != 1) return 2;
    uint16_t ctrl_port = 0, data_port = 0;
    int ctrl = udp_socket(&ctrl_port), data = udp_socket(&data_port);
    CHECK(ctrl >= 0 && data >= 0, "sockets");

    PfClientConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    cfg.state_dir = argv[3];
    cfg.name = "C sans-IO harness";
    cfg.pin = argv[4];
    cfg.flags = PF_CONNECT_PAIR;
    cfg.width = 640;
    cfg.height = 360;
    cfg.fps = 60;
    PfSockAddr host_pf = to_pf(&host);
    PfSession *s = NULL;
    int32_t r = punktfunk_session_new(&cfg, &host_pf, now_us(), &s);
    CHECK(r == PF_OK, "session_new: %s", last_error());
    if (r != PF_OK) return 1;

    PfReceiver *rx = NULL;
    static uint8_t buf[1 << 16];
    size_t fcap = 1 << 20;
    uint8_t *frame = malloc(fcap);
    int paired = 0, started = 0, reconfigured = 0, closed = 0, asked = 0, typed = 0, bye = 0;
    uint64_t frames = 0, new_mode = 0, gaps = 0, rejected = 0, reports = 0, keys = 0;
    uint64_t t0 = now_us(), last_report = t0, bye_at = 0;
    for (;;) {
        uint64_t now = now_us();
        /* Events. */
        PfEvent ev;
        for (;;) {
            memset(&ev, 0, sizeof ev);
            ev.struct_size = sizeof ev;
            if (punktfunk_session_poll_event(s, &ev) != PF_OK) break;
            switch (ev.kind) {
            case PF_EVENT_PAIRED:
                paired = ev.ok ? 1 : -1;
                break;
            case PF_EVENT_WELCOME: {
                PfEvent st;
                memset(&st, 0, sizeof st);
                st.struct_size = sizeof st;
                r = punktfunk_session_start(s, data_port, &st);
                CHECK(r == PF_OK && st.kind == PF_EVENT_STARTED, "start: %s", last_error());
                CHECK(punktfunk_receiver_new(st.key_material, now, &rx) == PF_OK,
                      "receiver_new: %s", last_error());
                started = 1;
                printf("started: %ux%u@%u, host data port %u, key generation %u\n", st.width,
                       st.height, st.fps, st.host_data_port, st.key_generation);
                break;
            }
            case PF_EVENT_KEY_UPDATE:
                CHECK(rx != NULL, "key update before start");
                if (rx) {
                    CHECK(punktfunk_receiver_install_key(rx, ev.key_generation, ev.key_material) ==
                              PF_OK,
                          "install key");
                    CHECK(punktfunk_session_key_installed(s, ev.key_generation) == PF_OK,
                          "key installed: %s", last_error());
                    keys++;
                }
                break;
            case PF_EVENT_RECONFIGURED:
                reconfigured = ev.width == 320 && ev.height == 192;
                printf("reconfigured: %ux%u@%u\n", ev.width, ev.height, ev.fps);
                break;
            case PF_EVENT_CLOSED:
                printf("closed: reason %u: %s\n", ev.reason, ev.text);
                closed = 1;
                break;
            default:
                break;
            }
        }
        /* Frames. */
        while (rx) {
            PfFrameInfo info;
            memset(&info, 0, sizeof info);
            info.struct_size = sizeof info;
            r = punktfunk_receiver_next_frame(rx, frame, fcap, &info);
            if (r == PF_ERR_BUFFER_TOO_SMALL) {
                fcap = (size_t)info.size;
                frame = realloc(frame, fcap);
                continue;
            }
            if (r != PF_OK) break;
            frames++;
            if (info.flags & PF_FRAME_DISCONTINUITY) gaps++;
            if ((info.flags & PF_FRAME_NEW_MODE) && info.mode_id != 0) new_mode++;
        }
        /* Application actions. */
        if (started && !asked && now - t0 > 1500000) {
            CHECK(punktfunk_session_request_mode(s, 320, 192, 30) == PF_OK, "request_mode: %s",
                  last_error());
            asked = 1;
        }
        if (started && !typed && now - t0 > 2500000) {
            PfInput in;
            memset(&in, 0, sizeof in);
            in.struct_size = sizeof in;
            in.kind = PF_INPUT_KEY;
            in.code = 0x41;
            in.down = 1;
            CHECK(punktfunk_session_send_input(s, &in) == PF_OK, "input: %s", last_error());
            in.down = 0;
            CHECK(punktfunk_session_send_input(s, &in) == PF_OK, "input: %s", last_error());
            typed = 1;
        }
        if (rx && now - last_report >= 100000) {
            PfLossReport lr;
            memset(&lr, 0, sizeof lr);
            lr.struct_size = sizeof lr;
            CHECK(punktfunk_receiver_take_loss_report(rx, &lr) == PF_OK, "loss report");
            if (!bye) CHECK(punktfunk_session_send_loss_report(s, &lr) == PF_OK, "send report: %s",
                            last_error());
            last_report = now;
            reports++;
        }
        if (!bye && (now - t0 > 4000000 || closed)) {
            CHECK(punktfunk_session_goodbye(s, now) == PF_OK, "goodbye");
            bye = 1;
            bye_at = now;
        }
        /* Transmit. */
        for (;;) {
            size_t len = 0;
            PfSockAddr to;
            if (punktfunk_session_poll_transmit(s, now, buf, sizeof buf, &len, &to) != PF_OK) break;
            struct sockaddr_in dst = from_pf(&to);
            sendto(ctrl, buf, len, 0, (struct sockaddr *)&dst, sizeof dst);
        }
        /* Wait: the nearer deadline, at most 10 ms. */
        uint64_t deadline = now + 10000, d = 0;
        r = punktfunk_session_poll_timeout(s, &d);
        if (r == PF_ERR_CLOSED) break;
        if (r == PF_OK && d < deadline) deadline = d;
        if (rx && punktfunk_receiver_poll_timeout(rx, &d) == PF_OK && d < deadline) deadline = d;
        if (bye && now - bye_at > 3000000) break;
        int wait_ms = deadline > now ? (int)((deadline - now + 999) / 1000) : 0;
        struct pollfd fds[2] = {{ctrl, POLLIN, 0}, {data, POLLIN, 0}};
        poll(fds, 2, wait_ms);
        for (;;) {
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t n = recvfrom(ctrl, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
            if (n < 0) break;
            PfSockAddr pf = to_pf(&from);
            punktfunk_session_handle_datagram(s, now_us(), &pf, buf, (size_t)n);
        }
        for (;;) {
            ssize_t n = recv(data, buf, sizeof buf, 0);
            if (n < 0) break;
            if (rx && punktfunk_receiver_handle_datagram(rx, now_us(), buf, (size_t)n) ==
                          PF_ERR_REJECTED)
                rejected++;
        }
        now = now_us();
        if (punktfunk_session_poll_timeout(s, &d) == PF_OK && d <= now)
            punktfunk_session_handle_timeout(s, now);
        if (rx && punktfunk_receiver_poll_timeout(rx, &d) == PF_OK && d <= now)
            punktfunk_receiver_handle_timeout(rx, now);
    }
    CHECK(paired == 1, "paired %d", paired);
    CHECK(started, "started");
    CHECK(reconfigured, "reconfigured to 320x192");
    CHECK(new_mode == 1, "new-mode frames %llu", (unsigned long long)new_mode);
    CHECK(frames >= 60, "frames %llu", (unsigned long long)frames);
    CHECK(gaps == 0, "discontinuities %llu", (unsigned long long)gaps);
    CHECK(reports >= 20, "loss reports %llu", (unsigned long long)reports);
    CHECK(typed, "input sent");
    printf("frames %llu, new-mode %llu, rejected datagrams %llu, loss reports %llu, key updates "
           "%llu; %d failed checks\n",
           (unsigned long long)frames, (unsigned long long)new_mode, (unsigned long long)rejected,
           (unsigned long long)reports, (unsigned long long)keys, failures);
    punktfunk_receiver_free(rx);
    punktfunk_session_free(s);
    free(frame);
    close(ctrl);
    close(data);
    return failures == 0 ? 0 : 1;
}

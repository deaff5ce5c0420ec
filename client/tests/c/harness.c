/*
 * C test harness for libpunktfunk_core (client/include/punktfunk_core.h), run by
 * client/tests/c_harness.rs against a running punktfunk/1 host, plain and under
 * AddressSanitizer.
 *
 *   harness HOST:PORT STATE_DIR PIN
 *
 * 1. ABI version and argument checks (null pointers, struct_size too small, bad input).
 * 2. Connects asking to pair without a PIN: answers PF_EVENT_PIN_NEEDED with PIN.
 * 3. Streams 640x360@60 with the pull API (starting with a too-small buffer: the frame must
 *    stay queued), asks for 320x192@30 half way (renegotiation), waits for the new mode's
 *    first frame, sends one input event of every kind, then takes frames through the
 *    callback API for a while.
 * 4. Checks frames, flags and statistics; closes; prints a summary line; exit 0 only if
 *    every check held.
 */
#define _POSIX_C_SOURCE 200809L
#include "punktfunk_core.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures = 0;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "harness: check failed at line %d: %s: ", __LINE__, \
                    #cond);                                                     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                              \
            failures++;                                                         \
        }                                                                       \
    } while (0)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *last_error(void) {
    static char buf[512];
    punktfunk_last_error_message(buf, sizeof buf);
    return buf;
}

/* Frames seen by the callback (on the library's receive thread). */
static atomic_uint_fast64_t callback_frames;
static atomic_uint_fast64_t callback_bytes;

static void on_frame(void *user, const uint8_t *data, size_t len, const PfFrameInfo *info) {
    uint64_t *magic = user;
    if (*magic != 0xC0FFEEu || data == NULL || len == 0 || info->size != len) {
        fprintf(stderr, "harness: bad callback arguments\n");
        abort();
    }
    /* Touch every byte: ASan checks the library's buffer is valid for the call. */
    uint8_t x = 0;
    for (size_t i = 0; i < len; i++) x ^= data[i];
    (void)x;
    atomic_fetch_add(&callback_frames, 1);
    atomic_fetch_add(&callback_bytes, len);
}

/* Takes events until none is waiting; returns 1 once CLOSED was seen. */
struct progress {
    int connected, pin_asked, paired, started, reconfigured, closed;
    uint32_t started_w, reconf_w, reconf_h;
};

static void drain_events(PfClient *c, struct progress *p, const char *pin, uint32_t wait_ms) {
    for (;;) {
        PfEvent ev;
        memset(&ev, 0, sizeof ev);
        ev.struct_size = sizeof ev;
        int32_t r = punktfunk_client_poll_event(c, &ev, wait_ms);
        if (r == PF_ERR_TIMEOUT) return;
        if (r == PF_ERR_CLOSED) {
            p->closed = 1;
            return;
        }
        CHECK(r == PF_OK, "poll_event: %s", last_error());
        if (r != PF_OK) return;
        CHECK(ev.struct_size == sizeof ev, "event struct_size %u", ev.struct_size);
        switch (ev.kind) {
        case PF_EVENT_CONNECTED:
            p->connected = 1;
            printf("connected, host %02x%02x%02x%02x…, trust %u\n", ev.fingerprint[0],
                   ev.fingerprint[1], ev.fingerprint[2], ev.fingerprint[3], ev.trust);
            break;
        case PF_EVENT_PIN_NEEDED:
            p->pin_asked = 1;
            CHECK(ev.pin_digits == strlen(pin), "pin digits %u", ev.pin_digits);
            CHECK(punktfunk_client_pair(c, pin) == PF_OK, "pair: %s", last_error());
            break;
        case PF_EVENT_PAIRED:
            p->paired = ev.ok ? 1 : -1;
            break;
        case PF_EVENT_STARTED:
            p->started = 1;
            p->started_w = ev.width;
            printf("started: session %llu, %ux%u@%u, codec %u, parity %u%%\n",
                   (unsigned long long)ev.session_id, ev.width, ev.height, ev.fps, ev.codec,
                   ev.parity_percent);
            break;
        case PF_EVENT_RECONFIGURED:
            p->reconfigured = 1;
            p->reconf_w = ev.width;
            p->reconf_h = ev.height;
            printf("reconfigured: %ux%u@%u from frame %u\n", ev.width, ev.height, ev.fps,
                   ev.first_frame_id);
            break;
        case PF_EVENT_FRAMES_LOST:
            printf("frames lost: %u from %u\n", ev.count, ev.first_frame_id);
            break;
        case PF_EVENT_CLOSED:
            printf("closed: reason %u by_peer %u: %s\n", ev.reason, ev.by_peer, ev.text);
            p->closed = 1;
            return;
        default:
            CHECK(0, "unknown event kind %u", ev.kind);
        }
    }
}

static PfInput input(uint32_t kind) {
    PfInput i;
    memset(&i, 0, sizeof i);
    i.struct_size = sizeof i;
    i.kind = kind;
    return i;
}

static void send_every_input(PfClient *c) {
    PfInput k = input(PF_INPUT_KEY);
    k.down = 1;
    k.code = 0x41; /* VK 'A' */
    CHECK(punktfunk_client_send_input(c, &k) == PF_OK, "key: %s", last_error());
    k.down = 0;
    CHECK(punktfunk_client_send_input(c, &k) == PF_OK, "key up: %s", last_error());
    PfInput m = input(PF_INPUT_MOUSE_MOVE);
    m.x = 5;
    m.y = -3;
    CHECK(punktfunk_client_send_input(c, &m) == PF_OK, "move: %s", last_error());
    PfInput a = input(PF_INPUT_MOUSE_POSITION);
    a.x = 100;
    a.y = 50;
    a.ref_width = 320;
    a.ref_height = 192;
    CHECK(punktfunk_client_send_input(c, &a) == PF_OK, "position: %s", last_error());
    PfInput b = input(PF_INPUT_MOUSE_BUTTON);
    b.down = 1;
    b.button = 1;
    CHECK(punktfunk_client_send_input(c, &b) == PF_OK, "button: %s", last_error());
    b.down = 0;
    CHECK(punktfunk_client_send_input(c, &b) == PF_OK, "button up: %s", last_error());
    PfInput s = input(PF_INPUT_SCROLL);
    s.y = 120;
    CHECK(punktfunk_client_send_input(c, &s) == PF_OK, "scroll: %s", last_error());
    PfInput h = input(PF_INPUT_HSCROLL);
    h.x = -120;
    CHECK(punktfunk_client_send_input(c, &h) == PF_OK, "hscroll: %s", last_error());
    PfInput t = input(PF_INPUT_TEXT);
    memcpy(t.text, "h\xc3\xa9", 3);
    t.text_len = 3;
    CHECK(punktfunk_client_send_input(c, &t) == PF_OK, "text: %s", last_error());
    PfInput tc = input(PF_INPUT_TOUCH);
    tc.phase = 1;
    tc.pointer_id = 7;
    tc.fx = 0.25f;
    tc.fy = 0.75f;
    tc.pressure = 0.5f;
    tc.rotation = -1;
    CHECK(punktfunk_client_send_input(c, &tc) == PF_OK, "touch: %s", last_error());
    PfInput pen = input(PF_INPUT_PEN);
    pen.phase = 3;
    pen.tool = 1;
    pen.pen_buttons = 1;
    pen.fx = 0.5f;
    pen.fy = 0.5f;
    pen.pressure = 0.3f;
    pen.rotation = 90;
    pen.tilt = 30;
    CHECK(punktfunk_client_send_input(c, &pen) == PF_OK, "pen: %s", last_error());
    PfInput g = input(PF_INPUT_GAMEPAD);
    g.pad = 0;
    g.active_mask = 1;
    g.buttons = 0x1000; /* A */
    g.lt = 10;
    g.rt = 200;
    g.lsx = -32768;
    g.rsy = 32767;
    CHECK(punktfunk_client_send_input(c, &g) == PF_OK, "gamepad: %s", last_error());

    /* Hostile input: a clear error, never a crash. */
    PfInput bad = input(99);
    CHECK(punktfunk_client_send_input(c, &bad) == PF_ERR_INVALID_ARGUMENT, "bad kind accepted");
    PfInput badb = input(PF_INPUT_MOUSE_BUTTON);
    badb.button = 9;
    CHECK(punktfunk_client_send_input(c, &badb) == PF_ERR_INVALID_ARGUMENT,
          "bad button accepted");
    PfInput badt = input(PF_INPUT_TEXT);
    badt.text_len = 33;
    CHECK(punktfunk_client_send_input(c, &badt) == PF_ERR_INVALID_ARGUMENT,
          "text_len 33 accepted");
    PfInput small = input(PF_INPUT_KEY);
    small.struct_size = 4;
    CHECK(punktfunk_client_send_input(c, &small) == PF_ERR_STRUCT_SIZE, "small struct accepted");
    CHECK(punktfunk_client_send_input(c, NULL) == PF_ERR_INVALID_ARGUMENT, "null input accepted");
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s HOST:PORT STATE_DIR PIN\n", argv[0]);
        return 2;
    }
    const char *host = argv[1], *state = argv[2], *pin = argv[3];

    /* 1. Version and arguments. */
    uint32_t v = punktfunk_abi_version();
    /* The library's minor must be at least the header's (trivially so at minor 0). */
    uint32_t minor = v & 0xffff, header_minor = PF_ABI_MINOR;
    CHECK(v >> 16 == PF_ABI_MAJOR && minor + 1 > header_minor, "abi version %08x", v);
    CHECK(strcmp(punktfunk_error_name(PF_ERR_CLOSED), "session closed") == 0, "error name");
    uint8_t fp[32] = {0}, fp2[32] = {0};
    CHECK(punktfunk_identity_fingerprint(state, fp) == PF_OK, "identity: %s", last_error());
    CHECK(punktfunk_identity_fingerprint(state, fp2) == PF_OK && memcmp(fp, fp2, 32) == 0,
          "identity is stable");
    CHECK(punktfunk_identity_fingerprint(NULL, fp) == PF_ERR_INVALID_ARGUMENT, "null dir");
    PfClient *client = NULL;
    CHECK(punktfunk_client_connect(NULL, &client) == PF_ERR_INVALID_ARGUMENT, "null config");
    PfClientConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = 8;
    CHECK(punktfunk_client_connect(&cfg, &client) == PF_ERR_STRUCT_SIZE, "small config");
    cfg.struct_size = sizeof cfg;
    CHECK(punktfunk_client_connect(&cfg, &client) == PF_ERR_INVALID_ARGUMENT, "null host");
    CHECK(last_error()[0] != '\0', "a message for the failure");
    cfg.host = "no-such-host.invalid";
    cfg.state_dir = state;
    CHECK(punktfunk_client_connect(&cfg, &client) == PF_ERR_RESOLVE, "unresolvable host");
    CHECK(client == NULL, "no handle on failure");
    CHECK(punktfunk_client_close(NULL, NULL) == PF_OK, "close(NULL) is a no-op");

    /* 2. Connect and pair (the PIN is asked for). */
    cfg.host = host;
    cfg.name = "C harness";
    cfg.flags = PF_CONNECT_PAIR;
    cfg.width = 640;
    cfg.height = 360;
    cfg.fps = 60;
    cfg.codecs = PF_CODEC_H264;
    cfg.frame_queue = 64;
    int32_t r = punktfunk_client_connect(&cfg, &client);
    CHECK(r == PF_OK && client != NULL, "connect: %s", last_error());
    if (r != PF_OK) return 1;
    struct progress p;
    memset(&p, 0, sizeof p);
    double deadline = now_s() + 20;
    while (!p.started && !p.closed && now_s() < deadline) drain_events(client, &p, pin, 100);
    CHECK(p.connected && p.pin_asked && p.paired == 1 && p.started, "connected %d pin %d paired %d started %d",
          p.connected, p.pin_asked, p.paired, p.started);
    CHECK(p.started_w == 640, "started at width %u", p.started_w);

    /* 3. Pull frames; renegotiate half way. */
    size_t cap = 16; /* too small on purpose: the first frame must stay queued */
    uint8_t *buf = malloc(cap);
    uint64_t frames = 0, keyframes = 0, bytes = 0, new_mode_frames = 0, too_small = 0;
    uint32_t last_id = 0;
    int have_last = 0, asked = 0, inputs_sent = 0;
    double start = now_s();
    while (now_s() - start < 4.0 && !p.closed) {
        PfFrameInfo info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        r = punktfunk_client_next_frame(client, buf, cap, &info, 50);
        if (r == PF_ERR_BUFFER_TOO_SMALL) {
            too_small++;
            CHECK(info.size > cap, "size %llu with cap %zu", (unsigned long long)info.size, cap);
            cap = (size_t)info.size * 2;
            buf = realloc(buf, cap);
            continue;
        }
        if (r == PF_OK) {
            CHECK(info.size > 0 && info.size <= cap, "frame size %llu", (unsigned long long)info.size);
            CHECK(info.received_us >= info.capture_us, "arrival before capture");
            if (frames == 0) {
                CHECK(info.flags & PF_FRAME_KEYFRAME, "the first frame is a keyframe");
                /* Annex-B start code. */
                CHECK(buf[0] == 0 && buf[1] == 0 && (buf[2] == 1 || (buf[2] == 0 && buf[3] == 1)),
                      "Annex-B start code");
            }
            if (have_last && !(info.flags & PF_FRAME_DISCONTINUITY))
                CHECK(info.frame_id == last_id + 1, "frame %u after %u", info.frame_id, last_id);
            last_id = info.frame_id;
            have_last = 1;
            frames++;
            bytes += info.size;
            keyframes += (info.flags & PF_FRAME_KEYFRAME) != 0;
            if ((info.flags & PF_FRAME_NEW_MODE) && info.mode_id != 0) {
                new_mode_frames++;
                CHECK(info.flags & PF_FRAME_KEYFRAME, "a new mode starts with a keyframe");
            }
        } else {
            CHECK(r == PF_ERR_TIMEOUT, "next_frame: %d %s", r, last_error());
        }
        if (!asked && now_s() - start > 1.5) {
            CHECK(punktfunk_client_request_mode(client, 0, 192, 30) == PF_ERR_INVALID_ARGUMENT,
                  "zero width accepted");
            CHECK(punktfunk_client_request_mode(client, 320, 192, 30) == PF_OK, "request_mode: %s",
                  last_error());
            asked = 1;
        }
        if (!inputs_sent && now_s() - start > 2.5) {
            send_every_input(client);
            CHECK(punktfunk_client_request_keyframe(client) == PF_OK, "keyframe: %s", last_error());
            inputs_sent = 1;
        }
        drain_events(client, &p, pin, 0);
    }
    CHECK(too_small == 1, "exactly one too-small answer (%llu)", (unsigned long long)too_small);
    CHECK(p.reconfigured && p.reconf_w == 320 && p.reconf_h == 192, "reconfigured %d to %ux%u",
          p.reconfigured, p.reconf_w, p.reconf_h);
    CHECK(new_mode_frames == 1, "one new-mode frame (%llu)", (unsigned long long)new_mode_frames);
    /* 1.5 s at 60 fps plus 2.5 s at 30 fps is 165; a loaded debug host sends fewer. */
    CHECK(frames >= 60, "pulled %llu frames", (unsigned long long)frames);

    /* The callback API for one second. */
    static uint64_t magic = 0xC0FFEEu;
    CHECK(punktfunk_client_set_frame_callback(client, on_frame, &magic) == PF_OK, "set callback");
    double cb_start = now_s();
    while (now_s() - cb_start < 1.0) drain_events(client, &p, pin, 50);
    CHECK(punktfunk_client_set_frame_callback(client, NULL, NULL) == PF_OK, "clear callback");
    uint64_t cb_frames = atomic_load(&callback_frames);
    CHECK(cb_frames >= 10, "callback frames %llu", (unsigned long long)cb_frames);

    /* 4. Statistics, an old-size struct, close. */
    PfStats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK(punktfunk_client_stats(client, &st) == PF_OK, "stats: %s", last_error());
    CHECK(st.frames_complete >= frames + cb_frames, "stats frames %llu < %llu",
          (unsigned long long)st.frames_complete, (unsigned long long)(frames + cb_frames));
    CHECK(st.frames_lost == 0, "frames lost %llu", (unsigned long long)st.frames_lost);
    CHECK(st.input_sent == 12, "input sent %llu", (unsigned long long)st.input_sent);
    CHECK(st.mode_switches == 1, "mode switches %llu", (unsigned long long)st.mode_switches);
    CHECK(st.latency_us_p50 >= 0 && st.latency_us_p99 >= st.latency_us_p50, "latency %lld/%lld",
          (long long)st.latency_us_p50, (long long)st.latency_us_p99);
    CHECK(st.buffers_created <= cfg.frame_queue + 1, "buffers created %llu",
          (unsigned long long)st.buffers_created);
    PfStats old;
    memset(&old, 0, sizeof old);
    old.struct_size = 4;
    CHECK(punktfunk_client_stats(client, &old) == PF_ERR_STRUCT_SIZE, "4-byte stats accepted");

    PfStats fin;
    memset(&fin, 0, sizeof fin);
    fin.struct_size = sizeof fin;
    CHECK(punktfunk_client_close(client, &fin) == PF_OK, "close: %s", last_error());
    CHECK(fin.frames_complete >= st.frames_complete, "final stats");
    free(buf);

    printf("pulled %llu frames (%llu keyframes, %llu bytes), callback %llu frames, stats: %llu "
           "complete, %llu recovered, %llu lost, %llu dropped, latency p50 %lld us p99 %lld us, "
           "rtt %llu us, %llu inputs, %llu buffers; %d failed checks\n",
           (unsigned long long)frames, (unsigned long long)keyframes, (unsigned long long)bytes,
           (unsigned long long)cb_frames, (unsigned long long)fin.frames_complete,
           (unsigned long long)fin.frames_recovered, (unsigned long long)fin.frames_lost,
           (unsigned long long)fin.frames_dropped, (long long)fin.latency_us_p50,
           (long long)fin.latency_us_p99, (unsigned long long)fin.rtt_us,
           (unsigned long long)fin.input_sent, (unsigned long long)fin.buffers_created, failures);
    return failures == 0 ? 0 : 1;
}

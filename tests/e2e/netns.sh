#!/usr/bin/env bash
# Two network namespaces joined by a veth pair, for end-to-end tests over a real (virtual)
# link with loss injected by nftables on the client's side.
#
#   netns.sh up                 create $PF_NETNS-host (10.77.0.1) and $PF_NETNS-client (10.77.0.2)
#   netns.sh loss PERCENT [MATCH...]  drop PERCENT % of packets arriving at the client
#                               (0 = none); MATCH narrows it, e.g. `udp sport 47998`
#   netns.sh down               remove both namespaces
#
# The kernel here has no netem; random loss comes from an nftables `numgen random` rule in the
# receiver's prerouting chain (in an output chain the sender would see EPERM instead).
#
# PF_NETNS (default `pf`, at most 8 characters) prefixes every name (namespaces `$PF_NETNS-host`
# and `$PF_NETNS-client`, veths `$PF_NETNS-vh` / `$PF_NETNS-vc`), so runs on one machine (a CI
# job next to a developer's) do not tear down each other's namespaces.
set -euo pipefail
P="${PF_NETNS:-pf}"
HOST_NS="$P-host"
CLIENT_NS="$P-client"
VETH_H="$P-vh"
VETH_C="$P-vc"

up() {
    down 2>/dev/null || true
    ip netns add "$HOST_NS"
    ip netns add "$CLIENT_NS"
    ip link add "$VETH_H" type veth peer name "$VETH_C"
    ip link set "$VETH_H" netns "$HOST_NS"
    ip link set "$VETH_C" netns "$CLIENT_NS"
    ip -n "$HOST_NS" addr add 10.77.0.1/24 dev "$VETH_H"
    ip -n "$CLIENT_NS" addr add 10.77.0.2/24 dev "$VETH_C"
    for ns in "$HOST_NS" "$CLIENT_NS"; do
        ip -n "$ns" link set lo up
    done
    # A veth passes UDP GSO trains across whole; the client's nftables rule would then see
    # (and drop) a whole frame's burst as one packet. One segment per packet makes the stack
    # segment in software at the device, as a NIC without USO does, so loss hits single
    # datagrams as on a real wire.
    ip -n "$HOST_NS" link set "$VETH_H" gso_max_segs 1
    ip -n "$HOST_NS" link set "$VETH_H" up
    ip -n "$CLIENT_NS" link set "$VETH_C" up
    ip netns exec "$CLIENT_NS" nft add table inet pfloss
    ip netns exec "$CLIENT_NS" nft add chain inet pfloss pre \
        '{ type filter hook prerouting priority -300; policy accept; }'
}

loss() {
    local pct="${1:?percent}"
    shift || true
    ip netns exec "$CLIENT_NS" nft flush chain inet pfloss pre
    if [ "$pct" -gt 0 ]; then
        # Extra arguments narrow the rule (e.g. `udp sport 47998`).
        ip netns exec "$CLIENT_NS" nft add rule inet pfloss pre \
            iifname "$VETH_C" "$@" numgen random mod 100 '<' "$pct" counter drop
    fi
}

down() {
    ip netns del "$HOST_NS" 2>/dev/null || true
    ip netns del "$CLIENT_NS" 2>/dev/null || true
}

counter() {
    ip netns exec "$CLIENT_NS" nft list chain inet pfloss pre
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    loss) shift; loss "$@" ;;
    counter) counter ;;
    *) echo "usage: $0 up|down|loss PERCENT|counter" >&2; exit 2 ;;
esac

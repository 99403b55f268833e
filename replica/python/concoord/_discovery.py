"""Where a client finds the group, in the two forms ConCoord accepts: an address list
(``"127.0.0.1:14000, 127.0.0.1:14001"``) or the group's DNS domain (``counterdomain.com``),
whose ``_concoord._tcp`` SRV records list the replicas."""

import ipaddress

from .exceptions import ConnectionError, InvalidAddress

SRV_PREFIX = "_concoord._tcp."


def is_domain(text):
    """A domain, not an address list: has a dot, no port, no comma, is not an IP."""
    t = text.strip()
    if "." not in t.rstrip(".") or ":" in t or "," in t or " " in t:
        return False
    try:
        ipaddress.ip_address(t)
        return False
    except ValueError:
        return True


def check_addr(addr):
    """``host:port`` with a port from 1 to 65535; raises InvalidAddress."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host:
        raise InvalidAddress(
            "%r: expected host:port, or a domain such as counterdomain.com" % addr
        )
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise InvalidAddress("%r: port must be a number from 1 to 65535" % addr)
    return addr


def parse_addrs(text):
    """``"h:p, h:p"`` as a list of addresses, duplicates dropped, order kept."""
    if not isinstance(text, str):
        raise InvalidAddress(
            "expected a string such as \"127.0.0.1:14000, 127.0.0.1:14001\", got %r" % (text,)
        )
    if not text.strip():
        raise InvalidAddress('empty address list (expected "host:port, host:port")')
    out = []
    for part in text.split(","):
        addr = part.strip()
        if not addr:
            raise InvalidAddress("empty entry in address list %r" % text)
        check_addr(addr)
        if addr not in out:
            out.append(addr)
    return out


class Seeds:
    """Addresses as given, or a domain looked up through SRV each time it is asked."""

    def __init__(self, spec, dns_server=None):
        if isinstance(spec, (list, tuple)):
            spec = ",".join(spec)
        if not isinstance(spec, str):
            raise InvalidAddress(
                "expected \"host:port, host:port\" or a domain, got %r" % (spec,)
            )
        self.domain = spec.strip().rstrip(".") if is_domain(spec) else None
        self.addrs = None if self.domain else parse_addrs(spec)
        self.dns_server = _nameserver(dns_server) if dns_server else None
        #: "ip:port" -> the SRV target name it was published under (TLS checks it).
        self.published = {}

    def describe(self):
        return self.domain if self.domain else ", ".join(self.addrs)

    async def resolve(self):
        """The addresses to try (SRV targets in priority order for a domain)."""
        if self.addrs is not None:
            return list(self.addrs)
        return await lookup_srv(self.domain, self.dns_server, published=self.published)


def _nameserver(spec):
    """``"127.0.0.1:15353"`` or ``"127.0.0.1"`` as (ip, port)."""
    host, sep, port = spec.rpartition(":")
    if not sep or "]" in port:
        host, port = spec, "53"
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InvalidAddress("dns_server %r: expected an IP address[:port]" % spec) from None
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise InvalidAddress("dns_server %r: bad port" % spec)
    return host, int(port)


async def lookup_srv(domain, server=None, timeout=5.0, published=None):
    """The ``host:port`` of every replica the domain's SRV records name. With a dict
    ``published``, each address's SRV target name goes in it: a client dials the IP (its
    nameserver may be the only one that knows the name) and checks TLS for the name."""
    import dns.asyncresolver
    import dns.exception
    import dns.rdatatype
    import dns.resolver

    resolver = dns.asyncresolver.Resolver(configure=server is None)
    if server is not None:
        resolver.nameservers = [server[0]]
        resolver.port = server[1]
    resolver.lifetime = timeout
    name = SRV_PREFIX + domain
    try:
        answer = await resolver.resolve(name, "SRV", tcp=False)
    except (dns.exception.DNSException, OSError) as e:
        raise ConnectionError(
            "cannot look up %s: %s" % (name, e or type(e).__name__),
            tried=[domain],
            reason=str(e),
        ) from None
    records = sorted(answer, key=lambda r: (r.priority, -r.weight))
    out = []
    for rec in records:
        target = rec.target.to_text()
        ips = [
            item.address
            for rrset in answer.response.additional
            if rrset.name == rec.target and rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
            for item in rrset
        ]
        if not ips:
            try:
                a = await resolver.resolve(target, "A")
                ips = [item.address for item in a]
            except (dns.exception.DNSException, OSError):
                continue
        for ip in ips:
            addr = ("[%s]:%d" if ":" in ip else "%s:%d") % (ip, rec.port)
            if published is not None:
                published[addr] = target.rstrip(".")
            if addr not in out:
                out.append(addr)
    if not out:
        raise ConnectionError(
            "%s lists no reachable replica" % name, tried=[domain], reason="no SRV targets"
        )
    return out

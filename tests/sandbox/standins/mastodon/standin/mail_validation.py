"""The e-mail checks of production Mastodon's User model (v4.6.5, app/models/user.rb:69-91).

- Devise ``:validatable``: format ``/\\A[^@\\s]+@[^@\\s]+\\z/`` (``invalid``);
- ``app/validators/email_address_validator.rb``: ``Mail::Address.new(value).address == value`` and none of
  ``%``, ``,``, ``"`` (``invalid``);
- ``app/validators/email_mx_validator.rb`` (runs in production: ``skip_mx_check?`` is
  ``Rails.env.local?``): a blank domain or one with ``..`` is ``invalid``; otherwise the domain's MX
  records are looked up with DNS (Ruby's ``Resolv::DNS``: the nameservers of /etc/resolv.conf, never
  /etc/hosts). A null MX (RFC 7505, exchange ``.``) is ``unreachable`` at once; otherwise the A and AAAA
  records of the domain and of every MX host are looked up, and none at all is ``unreachable``.
  Any DNS failure (NXDOMAIN, no answer, timeout) counts as no record, as in ``Resolv::DNS#getresources``.
"""

import re

DEVISE_EMAIL_RE = re.compile(r"\A[^@\s]+@[^@\s]+\Z")
# an addr-spec Mail::Address gives back unchanged: dot-atom local part and domain (no quoting,
# comments, display names or angle brackets, which would make `.address` differ from the input)
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
ADDR_SPEC_RE = re.compile(rf"\A{ATEXT}+(\.{ATEXT}+)*@{ATEXT}+(\.{ATEXT}+)*\.?\Z")
DNS_TIMEOUT = 5.0  # `dns.timeouts = 5`


def format_errors(value):
    """Errors of Devise's format check and EmailAddressValidator: a list of ``invalid``."""
    errors = []
    if not DEVISE_EMAIL_RE.match(value):
        errors.append("invalid")
    stripped = value.strip()
    if not ADDR_SPEC_RE.match(stripped) or any(c in stripped for c in '%,"'):
        errors.append("invalid")
    return errors


def email_domain(value):
    """``get_domain``: the part after the first ``@``, normalised (lower case, no trailing ``/``)."""
    if "@" not in value:
        return None
    domain = value.split("@", 1)[1].strip()
    if domain.endswith("/"):
        domain = domain[:-1]
    try:
        return domain.encode("idna").decode("ascii").lower() if domain else ""
    except UnicodeError:
        return None


def _lookup(resolver, name, rdtype):
    try:
        answer = resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False, lifetime=DNS_TIMEOUT)
    except Exception:  # noqa: BLE001 - NXDOMAIN, NoAnswer, NoNameservers, Timeout...: no record
        return []
    return list(answer.rrset or [])


def resolve_mx(domain, resolver=None):
    """(ips, mx hosts) like EmailMxValidator#resolve_mx; the null MX host is ``""`` as in Ruby."""
    if resolver is None:
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=True)
    records = [str(rr.exchange.to_text(omit_final_dot=True)) for rr in _lookup(resolver, domain, "MX")]
    records = ["" if r in ("", ".") else r for r in records]
    if records == [""]:  # "This domain explicitly rejects emails"
        return [], records
    ips = []
    for hostname in dict.fromkeys([domain, *records]):
        if not hostname:
            continue
        ips += [rr.address for rr in _lookup(resolver, hostname, "A")]
        ips += [rr.address for rr in _lookup(resolver, hostname, "AAAA")]
    return ips, records


def mx_errors(value, resolver=None):
    domain = email_domain(value)
    if not domain or ".." in domain:
        return ["invalid"]
    ips, _ = resolve_mx(domain, resolver)
    return [] if ips else ["unreachable"]


def email_errors(value, resolver=None):
    """Every error kind for the ``email`` attribute, in the order the model adds them."""
    if not value or not value.strip():
        return ["blank"]
    return format_errors(value) + mx_errors(value, resolver)

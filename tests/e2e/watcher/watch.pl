#!/usr/bin/perl
# The file watcher's judge (see watch.sh): reads "EVENTS|PATH" lines of inotifywait on stdin and, for
# every event on a regular file, lstat()s it right after the event (no fork in between).
#   DIR/events.log      the states of secret-bearing names (the name rules below)
#   DIR/violations.log  a secret-bearing name readable by group/other, or ANY file readable by
#                       group/other whose content holds a secret key name (whatever its name)
#   DIR/digests.log     every file readable by group/other: sha256 of its content at that moment and of
#                       each of its lines (tab-separated), compared after the run with the digests of
#                       the real secret files
# The key names come from DIR/keys, one a line, matched literally.
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);

my $dir = shift or die "usage: watch.pl DIR\n";
open(my $ev, ">>", "$dir/events.log") or die "$dir/events.log: $!\n";
open(my $vi, ">>", "$dir/violations.log") or die "$dir/violations.log: $!\n";
open(my $dg, ">>", "$dir/digests.log") or die "$dir/digests.log: $!\n";
for my $fh ($ev, $vi, $dg) { my $old = select($fh); $| = 1; select($old); }

open(my $kf, "<", "$dir/keys") or die "$dir/keys: $!\n";
my @names = grep { length } map { chomp; $_ } <$kf>;
close $kf;
die "$dir/keys names no key\n" unless @names;
my $alternatives = join("|", map { quotemeta } @names);
my $keys = qr/($alternatives)/;

while (my $line = <STDIN>) {
  chomp $line;
  my ($e, $p) = split(/\|/, $line, 2);
  next unless defined $p;
  my @s = lstat($p);
  next unless @s && -f _;
  my $mode = $s[2] & 07777;
  my $rec = sprintf("%s %s %04o %d:%d %d", $e, $p, $mode, $s[4], $s[5], $s[7]);
  my $base = $p;
  $base =~ s{.*/}{};
  my $sensitive = ($base =~ /^\.env\.(production|db)/ || $base =~ /mastodon-admin-password/
    || $base =~ /pre-migration-/ || $base =~ /pyinfra/i || $base =~ /\.tmp$/
    || $p =~ m{^/var/backups/mastodon/} || $p =~ m{^/(tmp|var/tmp)/} || $p =~ m{^/root/}
    || $p =~ m{^/data/nginx/local_ca/});
  # world/group-readable local CA *certificate* files are public by design
  # the CA's public records: certificates, requests, serial and index (openssl ca); its key stays secret
  my $public = $p =~ m{^/data/nginx/local_ca/.*(Cert|\.crt|\.srl|\.csr|serial\.txt|index\.txt|new_certs/)};
  if ($sensitive) {
    print $ev "$rec\n";
    print $vi "$rec\n" if ($mode & 077) && !$public;
  }
  next unless $mode & 044;
  # readable by group/other: look at the content, whatever the name
  next if $s[7] > 4194304;
  my $data = "";
  if (open(my $fh, "<", $p)) {
    binmode $fh;
    local $/;
    $data = <$fh>;
    close $fh;
    $data = "" unless defined $data;
  } else {
    next;
  }
  my %hit;
  $hit{$1} = 1 while $data =~ /$keys/g;
  print $vi "$rec content:" . join(",", sort keys %hit) . "\n" if %hit;
  next if length($data) > 262144;
  my @lines = length($data) <= 65536 ? split(/\n/, $data) : ();
  @lines = @lines[0 .. 1999] if @lines > 2000;
  print $dg join("\t", $rec, sha256_hex($data), join(",", map { sha256_hex($_) } grep { length($_) >= 8 } @lines)) . "\n";
}

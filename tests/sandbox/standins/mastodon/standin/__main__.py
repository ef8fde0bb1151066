"""Entry point of every shim: `python3 -m standin PROGRAM ARGS...`."""

import sys


def usage(message):
    sys.stderr.write(message + "\n")
    return 1


def bundle(argv):
    """`bundle exec COMMAND ...` as used by upstream's compose file and docs."""
    if argv[:1] != ["exec"] or len(argv) < 2:
        return usage("[stand-in] bundle: only `bundle exec puma|sidekiq|rails|rake|tootctl ...` is emulated")
    command, rest = argv[1], argv[2:]
    return dispatch(command.rsplit("/", 1)[-1] if command.startswith(("bin/", "./bin/")) else command, rest)


def dispatch(program, argv):
    if program == "bundle":
        return bundle(argv)
    if program in ("rails", "rake"):
        from .rails import main

        return main(argv, "bin/rails" if program == "rails" else "rake")
    if program == "tootctl":
        from .tootctl import main

        return main(argv)
    if program == "puma":
        from .web import main

        return main(argv)
    if program == "sidekiq":
        import os
        import sys as _sys

        from .boot import boot_rails
        from .sidekiq import exec_titled

        boot_rails(count=False)  # fail before renaming the process; the renamed one boots (and counts)
        exec_titled(os.path.realpath(_sys.executable or "/usr/bin/python3"), argv)
    if program == "sidekiq-run":
        from .sidekiq import main

        return main(argv)
    if program == "node":
        from .streaming import main

        return main(argv)
    return usage(f"[stand-in] unknown program {program!r}")


def main():
    if len(sys.argv) < 2:
        return usage("usage: python3 -m standin PROGRAM [ARGS...]")
    import os

    # what the boot counter records (kept across the sidekiq stand-in's re-exec)
    os.environ.setdefault("STANDIN_BOOT_COMMAND", " ".join(sys.argv[1:]))
    return dispatch(sys.argv[1], sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

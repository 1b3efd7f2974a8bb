"""melody_studio: serve the studio page on this machine and print its URL (Ctrl-C stops it)."""

from __future__ import annotations

from absl import flags

from melody_plugin.cli import flags as common

FLAGS = flags.FLAGS
common.define("multi_string", "run_dir", [], "A run directory to offer beside the shipped model (repeat the flag "
              "for more).")
common.define("multi_string", "models_dir", [], "A folder searched for run directories to offer (repeatable).")
common.define("string", "host", "127.0.0.1", "Address to listen on. Only loopback addresses unless "
              "--expose_to_network.")
common.define("integer", "port", 8765, "Port to listen on (0: any free port).")
common.define("boolean", "expose_to_network", False, "Allow a --host other machines can reach: anyone who can "
              "reach it can upload files and run generation on this machine.")
common.define("float", "generation_timeout_s", 60.0, "A generation still running after this many seconds is "
              "stopped and the page says so.")
common.define("integer", "workers", 2, "Generations that may run at once (more wait their turn).")
common.define("integer", "max_upload_mb", 16, "Largest primer file accepted, in megabytes.")


def main(argv):
    from melody_plugin import studio

    missing = studio.missing_modules()
    if missing:
        common.fail("melody_studio", f"needs {', '.join(missing)}: {studio.INSTALL_HINT}")
    if not 0 <= FLAGS.port <= 65535:
        common.fail("melody_studio", f"--port must be in [0, 65535], got {FLAGS.port}")
    if not 0 < FLAGS.generation_timeout_s < 86400 or not 1 <= FLAGS.max_upload_mb <= 1024:
        common.fail("melody_studio", "--generation_timeout_s must be in (0, 86400) and --max_upload_mb in [1, 1024]")
    from melody_plugin.studio import server

    server.check_host(FLAGS.host, FLAGS.expose_to_network)
    with server.studio_session(FLAGS.run_dir, FLAGS.models_dir, FLAGS.generation_timeout_s, FLAGS.workers,
                               FLAGS.max_upload_mb * 1024 * 1024, any_host=FLAGS.expose_to_network,
                               host=FLAGS.host) as session:
        running = server.StudioServer(session, FLAGS.host, FLAGS.port)
        models = len(session.models)
        print(f"melody_studio: open {running.url} in your browser ({models} model{'s' * (models > 1)}; Ctrl-C "
              "stops it)", flush=True)
        running.serve()
    print("melody_studio: stopped; its temporary files are removed")


def console_entry_point():
    common.run("melody_studio", main, __name__)


if __name__ == "__main__":
    console_entry_point()

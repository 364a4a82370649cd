"""`edge-qwq collect`: the many-device collector (fleet/)."""
from __future__ import annotations

import signal
import threading

import click


@click.command("collect")
@click.option("--mqtt", "mqtt_url", required=True, metavar="URL",
              help="Broker and topic prefix: mqtt://HOST[:PORT]/PREFIX (mqtts:// for TLS); subscribes to "
                   "PREFIX/+/decisions, PREFIX/+/events and PREFIX/+/status.")
@click.option("--store", required=True, metavar="PATH|URL",
              help="Central store: an SQLite file (e.g. central.db) or postgresql://user@host/db.")
@click.option("--http", "http", default=None, metavar="HOST:PORT",
              help="Serve / (HTML) /status (JSON) /healthz /readyz /metrics of all devices.")
@click.option("--http-token-file", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="--http: every route but /healthz and /readyz asks for `Authorization: Bearer <token>`.")
@click.option("--client-id", default=None,
              help="MQTT client id of the persistent session [default: edge-qwq-collector-<hostname>]. Keep it "
                   "fixed: the broker queues messages for this id while the collector is down.")
@click.option("--mqtt-user", default=None, help="MQTT user name.")
@click.option("--mqtt-password-file", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="A file holding the MQTT password (never printed).")
@click.option("--mqtt-tls-ca", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="mqtts://: the CA certificate to trust (default: the system's).")
@click.option("--session-expiry-days", default=7.0, show_default=True, type=click.FloatRange(0.0, 3650.0),
              help="How long the broker keeps the session (and queues messages) while the collector is away.")
def command(mqtt_url, store, http, http_token_file, client_id, mqtt_user, mqtt_password_file, mqtt_tls_ca,
            session_expiry_days):
    """Collect every device's decisions and events from MQTT into one store, and show all devices.

    \b
    Examples:
      edge-qwq collect --mqtt mqtt://broker:1883/edge-qwq/line3 --store central.db --http 127.0.0.1:8090
      edge-qwq collect --mqtt mqtts://broker:8883/edge-qwq/+ --mqtt-user collector \\
          --mqtt-password-file /etc/edge-qwq/mqtt.pw --store postgresql://edge@db/plant
    """
    from edge_runtime.errors import EdgeError

    try:
        from fleet.collector import Collector, parse_mqtt_url, read_password_file
        from fleet.store import CentralStore
    except ModuleNotFoundError as e:
        if e.name not in ("sqlalchemy", "paho"):
            raise
        raise EdgeError(f"`edge-qwq collect` needs {e.name} (not installed here): "
                        "pip install sqlalchemy 'psycopg[binary]' paho-mqtt") from None

    if http_token_file and not http:
        raise click.UsageError("--http-token-file needs --http")
    password = read_password_file(mqtt_password_file) if mqtt_password_file else None
    target = parse_mqtt_url(mqtt_url, mqtt_user, password)
    if mqtt_tls_ca and not target.tls:
        raise EdgeError("--mqtt-tls-ca needs an mqtts:// URL")
    central = CentralStore.open(store)
    api = None
    collector = Collector(target, central, client_id=client_id, tls_ca=mqtt_tls_ca,
                          session_expiry_s=int(session_expiry_days * 86400))
    try:
        if http:
            from fleet.status import FleetHttp, FleetView

            api = FleetHttp(http, FleetView(collector), http_token_file).start()
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        click.echo(f"edge-qwq: collect: {target.shown} -> {central.shown} as {collector.client_id}"
                   + (f"; status on http://{api.server.server_address[0]}:{api.port}/" if api else ""), err=True)
        collector.start()
        while not stop.wait(1.0):
            pass
        click.echo("edge-qwq: collect: stopping (storing what was received)", err=True)
    finally:
        collector.close()
        if api is not None:
            api.close()
        central.close()

"""A real ``clickhouse-server`` on 127.0.0.1, for the tests and the benchmarks.

It runs on free ports with everything (data, logs, config) in one directory
and is stopped by its PID. The binary is the Debian package's
(``apt-get install clickhouse-server``, ClickHouse 18.16).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from chroma.bench.server_process import free_port, stop_process, wait_until_answers

SERVER_BINARY = "/usr/sbin/clickhouse-server"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 3.0

_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{dir}/log/server.log</log>
        <errorlog>{dir}/log/server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <path>{dir}/data/</path>
    <tmp_path>{dir}/tmp/</tmp_path>
    <user_files_path>{dir}/user_files/</user_files_path>
    <format_schema_path>{dir}/format_schemas/</format_schema_path>
    <users_config>{dir}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <!-- A scratch server: the parts that merges replace go at once instead of after minutes,
         so its data directory keeps few files and removing it is quick. -->
    <merge_tree>
        <old_parts_lifetime>1</old_parts_lifetime>
        <cleanup_delay_period>1</cleanup_delay_period>
    </merge_tree>
</yandex>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
    </interval></default></quotas>
</yandex>
"""


def server_available() -> bool:
    return os.access(SERVER_BINARY, os.X_OK)


@dataclass
class ClickhouseServer:
    process: subprocess.Popen
    http_port: int
    directory: Path

    @property
    def settings(self) -> dict:
        """``chroma.configure`` settings that point a ClickHouse DB at this server."""
        return {"db_impl": "clickhouse", "clickhouse_host": "127.0.0.1", "clickhouse_port": self.http_port}

    def log(self) -> str:
        path = self.directory / "log" / "server.err.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def stop(self) -> None:
        # Its data is scratch: no need to wait long for a clean shutdown.
        stop_process(self.process, STOP_TIMEOUT)


def start_clickhouse(directory: Path) -> ClickhouseServer:
    """Starts ``clickhouse-server`` with its own config in ``directory``; waits for ``/ping``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "log").mkdir(exist_ok=True)
    http_port, tcp_port = free_port(), free_port()
    while tcp_port == http_port:
        tcp_port = free_port()
    (directory / "users.xml").write_text(_USERS)
    config = directory / "config.xml"
    config.write_text(_CONFIG.format(dir=directory, http_port=http_port, tcp_port=tcp_port))
    with open(directory / "log" / "stdout", "w") as out:
        process = subprocess.Popen(
            [SERVER_BINARY, f"--config-file={config}"], stdout=out, stderr=subprocess.STDOUT, cwd=directory
        )
    server = ClickhouseServer(process, http_port, directory)
    wait_until_answers(process, f"http://127.0.0.1:{http_port}/ping", STARTUP_TIMEOUT, "clickhouse-server", server.log)
    return server

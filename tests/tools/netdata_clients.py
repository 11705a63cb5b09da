#!/usr/bin/env python3
"""Netdata's real Python clients, unchanged, against ipcwatch: Home Assistant's integration
client (PyPI `netdata`, which builds its URLs with yarl) and netdata-pandas. Each call must
return the known values of the namespace the test made: SEMAPHORES semaphores in ARRAYS arrays.

Usage: netdata_clients.py PORT ARRAYS SEMAPHORES   (prints "ok" and exits 0, or fails)"""

import asyncio
import sys

import netdata_pandas.data as nd
from netdata import Netdata

port, arrays, semaphores = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
host = f"127.0.0.1:{port}"


async def home_assistant():
    client = Netdata("127.0.0.1", port=port)
    try:
        await client.get_info()
        assert client.info and "version" in client.info, client.info
        # yarl sends /api/v1/data%3Fchart=...: Netdata decodes the path before the query.
        await client.get_chart("system.ipc_semaphores")
        assert client.values is not None, "no data"
        assert client.values.get("semaphores") == semaphores, client.values
        await client.get_chart("system.ipc_semaphore_arrays")
        assert client.values.get("arrays") == arrays, client.values
        await client.get_alarms()
        names = {a["name"] for a in client.alarms["alarms"].values()}
        assert "semaphores_used" in names and "semaphore_arrays_used" in names, names
        await client.get_allmetrics()
        dims = client.metrics["system.ipc_semaphore_arrays"]["dimensions"]
        assert dims["arrays"]["value"] == arrays, dims
    finally:
        await client.close()


asyncio.run(home_assistant())

# netdata-pandas: the chart list, a data frame (it asks for dimensions=*), the alarm log.
charts = nd.get_chart_list(host=host)
assert "system.ipc_semaphores" in charts and "system.ipc_semaphore_arrays" in charts, charts
df = nd.get_data(hosts=[host], charts=["system.ipc_semaphores", "system.ipc_semaphore_arrays"], after=-5, before=0)
assert not df.empty, "an empty data frame"
assert df["system.ipc_semaphores|semaphores"].iloc[-1] == semaphores, df.tail()
assert df["system.ipc_semaphore_arrays|arrays"].iloc[-1] == arrays, df.tail()
log = nd.get_alarm_log(host=host)
assert "semaphores_used" in set(log["name"]), log
print("ok")

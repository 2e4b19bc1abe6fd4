"""A do-nothing HTTP/1.1 server, to measure the ceiling of the load generator.

It answers every request on a keep-alive connection with the same small TwiML body, using raw
``asyncio`` streams in one process. Driving it shows how many requests per second the generator
can produce on this machine; the real servers are far slower, so their numbers are theirs.
Run as ``python -m bench.trivial_server PORT``; it prints ``ready`` once it listens.
"""

from __future__ import annotations

import asyncio
import sys

BODY = b'<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="/voice/answer?step=1"/></Response>'
REPLY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            writer.write(REPLY)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _main(port: int) -> None:
    server = await asyncio.start_server(_serve_connection, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1])))

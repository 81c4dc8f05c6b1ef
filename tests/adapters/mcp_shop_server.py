"""The MCP tests' own server, run over stdio: the shop's two tools (gepetto.datasets.shop).

Ways to fail on purpose, for the tests of the adapter's recovery: the item ``"crash"`` makes
the server process exit at once (after a line on stderr), the item ``"hang"`` makes it
sleep far past any call timeout. An unknown item is a tool error the model reads.
"""

from __future__ import annotations

import os
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from gepetto.datasets import shop

server = MCPServer("gepetto-shop")


@server.tool(description="The unit price of an item, in dollars.")
def lookup_price(item: str) -> float:
    name = item.strip().lower()
    if name in ("crash", "crashe"):
        print("shop server: asked to crash, exiting with status 3", file=sys.stderr, flush=True)
        os._exit(3)
    if name in ("hang", "hange"):
        time.sleep(3600)
    try:
        return shop.lookup_price(item)
    except KeyError as error:
        raise ToolError(str(error.args[0])) from None


@server.tool(description="The product of two numbers.")
def multiply(a: float, b: float) -> float:
    return shop.multiply(a, b)


if __name__ == "__main__":
    server.run()

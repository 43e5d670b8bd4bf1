"""How endpoints get what the container provides."""

from typing import Any, cast

from dependency_injector.wiring import Provide


async def _marker_itself(marker: object) -> object:
    """The marker itself, which @inject replaces with the provided object."""
    return marker


# A Provide marker that FastAPI awaits on the event loop. FastAPI runs a plain
# callable dependency, such as Provide, on its thread pool: for POST
# /create_order, when a FastAPI route placed it, that hop cost as much as the order. Built with type() because
# the stubs declare Provide as a value, which a class statement cannot extend.
AwaitedProvide: Any = type("AwaitedProvide", (cast(type, Provide),), {"__call__": _marker_itself})

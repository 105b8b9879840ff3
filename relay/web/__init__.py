"""HTTP side of the relay (aiohttp): the operations port (:mod:`relay.web.ops`: metrics,
health, log level) and, with issue 7, the public evidence verification page."""

"""A job-queue worker in its own process, for tests that kill it: ``python -m
tests.support_jobs_worker CONFIG_JSON``. It builds the app from the JSON config (its Twilio
client pointed at a :class:`tests.support_twilio_api.LocalTwilio` stand-in), runs a Dramatiq
worker on the app's queue, prints ``ready`` and runs until killed."""

from __future__ import annotations

import json
import sys
import time

from twilio.rest import Client

from tests.support_twilio_api import LocalTwilio


def main(raw: str) -> None:
    config = json.loads(raw)
    twilio_url = config.pop("TWILIO_API_URL")
    config["TWILIO_CLIENT"] = Client(
        config["TWILIO_ACCOUNT_SID"], "token", http_client=LocalTwilio(twilio_url)
    )
    from app import create_app

    app = create_app(config)
    app.extensions["omnivoice.jobs"].start(worker_threads=1, relay=False)
    print("ready", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1])

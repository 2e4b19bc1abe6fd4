"""Flask blueprints facing Twilio: thin views that check signatures, step the engine and render TwiML."""

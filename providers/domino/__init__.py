"""The Domino provider's parts: a REST client (`client`), its models, auth and transport, and an
API emulator (`emulator`) for tests and offline use. The provider itself builds on `DominoClient`."""

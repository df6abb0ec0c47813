"""Wallets, payments and recommendations with every service its own ``mercato serve``
process, on RabbitMQ and PostgreSQL, driven only through the gateway's HTTP port (the
scenarios of ``test_payments_and_wallets`` and ``test_recommendations``)."""

from __future__ import annotations

import pytest

from tests.e2e import test_payments_and_wallets as wallets
from tests.e2e import test_recommendations as recommendations
from tests.e2e import test_saga as saga
from tests.e2e.test_saga_processes import shop

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]
__all__ = ["shop"]  # the fixture: the whole system as processes


async def test_wallets_and_recommendations_as_processes_on_rabbitmq_and_postgres(
    shop: saga.Shop,
) -> None:
    await wallets.test_a_credited_wallet_pays_an_order_and_its_cancellation_refunds_it(shop)
    await wallets.test_customers_see_only_their_own_payments_and_wallet(shop)
    await wallets.test_concurrent_credits_all_count(shop)
    await recommendations.test_views_and_orders_make_the_lists_and_a_deleted_product_leaves_them(
        shop
    )
    await recommendations.test_a_users_list_follows_what_they_viewed_and_is_theirs_alone(shop)

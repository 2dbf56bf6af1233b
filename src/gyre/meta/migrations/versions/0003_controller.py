"""controller: consumer positions and reaction failures

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consumer_positions",
        sa.Column("reaction", sa.String(length=128), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reaction", name=op.f("pk_consumer_positions")),
    )
    op.create_table(
        "reaction_failures",
        sa.Column("reaction", sa.String(length=128), nullable=False),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=26), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reaction"],
            ["consumer_positions.reaction"],
            name=op.f("fk_reaction_failures_reaction_consumer_positions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("reaction", "event_seq", name=op.f("pk_reaction_failures")),
    )
    with op.batch_alter_table("reaction_failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reaction_failures_dead"), ["dead"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reaction_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reaction_failures_dead"))

    op.drop_table("reaction_failures")
    op.drop_table("consumer_positions")

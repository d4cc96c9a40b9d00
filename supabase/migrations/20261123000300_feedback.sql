-- Feedback: a user's rating (up/down, optional comment) of one of Jelly's answers
-- to them. Idempotent. Written once as SQL functions, called by both backends.

create table if not exists public.message_feedback (
    message_id bigint primary key references public.chat_messages (id) on delete cascade,
    user_id bigint not null references public.users (id) on delete cascade,
    rating text not null check (rating in ('up', 'down')),
    comment text,
    application text,
    created_at timestamptz not null default clock_timestamp(),
    updated_at timestamptz not null default clock_timestamp()
);
create index if not exists message_feedback_day_idx
    on public.message_feedback (updated_at, application);

alter table public.message_feedback enable row level security;

-- Rate an answer of the token's user (p_rating null withdraws the rating).
-- Anything but the user's own Jelly answer is JL404.
create or replace function public.jelly_set_feedback(
    p_token text, p_message_id bigint, p_rating text, p_comment text default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_message public.chat_messages;
    v_row public.message_feedback;
begin
    select m.* into v_message from public.chat_messages m
    join public.users u on u.id = m.user_id
    where m.id = p_message_id and u.token = p_token and m.type = 'jelly';
    if v_message.id is null then
        raise exception 'message not found' using errcode = 'JL404';
    end if;
    if p_rating is null then
        delete from public.message_feedback where message_id = p_message_id;
        return jsonb_build_object('message_id', p_message_id, 'rating', null, 'comment', null,
                                  'updated', null);
    end if;
    if p_rating not in ('up', 'down') then
        raise exception 'rating must be up, down or null' using errcode = 'JL400';
    end if;
    insert into public.message_feedback (message_id, user_id, rating, comment, application)
    values (p_message_id, v_message.user_id, p_rating, left(p_comment, 2000), v_message.application)
    on conflict (message_id) do update
        set rating = excluded.rating, comment = excluded.comment,
            updated_at = clock_timestamp()
    returning * into v_row;
    return jsonb_build_object('message_id', v_row.message_id, 'rating', v_row.rating,
                              'comment', v_row.comment, 'updated', v_row.updated_at);
end;
$$;

-- The ratings of these messages: {"<message_id>": {rating, comment, updated}}.
create or replace function public.jelly_feedback_of(p_message_ids jsonb)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_object_agg(f.message_id::text, jsonb_build_object(
        'rating', f.rating, 'comment', f.comment, 'updated', f.updated_at)), '{}'::jsonb)
    from public.message_feedback f
    where f.message_id in (select (jsonb_array_elements_text(p_message_ids))::bigint)
$$;

-- Counts per application and (UTC) day of the rating, newest day first.
create or replace function public.jelly_feedback_summary(
    p_since timestamptz default null, p_until timestamptz default null
)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(jsonb_build_object(
        'application', t.application, 'day', t.day, 'up', t.up, 'down', t.down,
        'total', t.up + t.down) order by t.day desc, t.application nulls last), '[]'::jsonb)
    from (select f.application, to_char(f.updated_at at time zone 'UTC', 'YYYY-MM-DD') as day,
                 count(*) filter (where f.rating = 'up') as up,
                 count(*) filter (where f.rating = 'down') as down
          from public.message_feedback f
          where (p_since is null or f.updated_at >= p_since)
            and (p_until is null or f.updated_at < p_until)
          group by 1, 2) t
$$;

-- Only the server may call these functions (see the rpc migration).
select public.jelly_server_only(array[
        'public.jelly_set_feedback(text, bigint, text, text)',
        'public.jelly_feedback_of(jsonb)',
        'public.jelly_feedback_summary(timestamptz, timestamptz)'
    ]);

notify pgrst, 'reload schema';
